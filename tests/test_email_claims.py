"""Nobody can squat someone else's email address: an unverified claim never blocks anyone.

Uniqueness binds verified addresses only; confirming an address removes other accounts'
unverified claims to it (they are told, at that address); sign-up and PATCH /me answer the same
whether or not an address is registered, so neither is an oracle for who has an account."""

import threading
from concurrent.futures import ThreadPoolExecutor

from conftest import PASSWORD, link_token


def sign_up(client, username, email):
    body = {"username": username, "password": PASSWORD, "email": email}
    return client.post("/signup", json=body)


def confirm(client, message):
    return client.post("/email-verification/confirm", json={"token": link_token(message)})


def test_a_squatters_unverified_claim_does_not_block_the_owner(app, client, mailbox, sql):
    mallory = app.test_client()
    assert sign_up(mallory, "mallory", "alice@example.com").status_code == 201
    [to_mallory] = mailbox.deliver()

    response = sign_up(client, "alice", "ALICE@example.com")  # was: 422 already in use
    assert response.status_code == 201
    assert (response.get_json()["email"], response.get_json()["email_verified"]) == (
        "alice@example.com",
        False,
    )
    [to_alice] = mailbox.deliver()
    assert confirm(client, to_alice).status_code == 200

    # mallory's claim is gone, mallory is told (at the address), and it cannot come back
    assert sql("SELECT username, email, email_verified_at IS NOT NULL FROM users ORDER BY id") == [
        ("mallory", None, False),
        ("alice", "alice@example.com", True),
    ]
    [notice] = mailbox.deliver()
    assert notice["To"] == "alice@example.com"
    assert "mallory" in notice.get_content()
    events = [e["type"] for e in mallory.get("/me/security-events").get_json()]
    assert events[0] == "email_removed"
    assert confirm(mallory, to_mallory).status_code == 422  # that link died with the claim

    # login by email and password reset find the owner
    login = {"username": "alice@example.com", "password": PASSWORD}
    assert app.test_client().post("/login", json=login).get_json()["username"] == "alice"
    app.test_client().post("/password-reset", json={"email": "alice@example.com"})
    [new_browser, reset] = mailbox.deliver()  # that login came from a browser new to alice
    assert new_browser["Subject"] == "A login from a new browser"
    assert reset["To"] == "alice@example.com" and "reset" in reset["Subject"].lower()


def test_patch_me_to_a_squatted_address_works(app, signup, verified, mailbox):
    mallory = signup("mallory", email="alice@example.com")
    mailbox.deliver()
    alice = verified("alice2")  # has alice2@example.com, verified
    response = alice.patch("/me", json={"email": "alice@example.com", "current_password": PASSWORD})
    assert response.status_code == 200  # was: 422 already in use
    assert mallory.get("/me").get_json()["email"] == "alice@example.com"  # untouched, still


def owner_view_without_ids(response):
    body = dict(response.get_json())
    for key in ("id", "username", "created_at"):
        body.pop(key)
    return response.status_code, body


def test_sign_up_answers_the_same_whether_or_not_an_address_is_registered(app, verified):
    verified("bob")  # bob@example.com, verified
    taken = sign_up(app.test_client(), "mallory", "bob@example.com")
    free = sign_up(app.test_client(), "trudy", "bob2@example.com")
    assert owner_view_without_ids(taken) == (
        201,
        {"email": "bob@example.com", "email_verified": False, "role": "user"},
    )
    assert owner_view_without_ids(free)[0] == 201
    assert owner_view_without_ids(free)[1]["email_verified"] is False


def test_patch_me_answers_the_same_and_does_the_same_work_before_answering(
    app, signup, verified, queries
):
    verified("bob")
    results = {}
    for address in ("bob@example.com", "nobody@example.com"):
        client = signup(f"u{len(results)}x")
        body = {"email": address, "current_password": PASSWORD}
        with queries() as statements:  # the response stays open: what ran before it was sent
            response = client.patch("/me", json=body, buffered=False)
        results[address] = (
            response.status_code,
            response.get_json()["email_verified"],
            [s.split()[0] for s in statements],
        )
        response.close()
    assert results["bob@example.com"] == results["nobody@example.com"]
    assert results["bob@example.com"][0] == 200


def test_the_verified_owner_hears_of_attempts_at_most_a_few_times(signup, verified, mailbox):
    verified("bob")
    mallory = signup("mallory")
    for i in range(8):
        address = "bob@example.com" if i % 2 == 0 else "elsewhere@example.com"
        body = {"email": address, "current_password": PASSWORD}
        assert mallory.patch("/me", json=body).status_code == 200
    notices = [m for m in mailbox.deliver() if m["To"] == "bob@example.com"]
    assert 1 <= len(notices) <= 4  # RATELIMIT_EMAIL_VERIFICATION (5 per hour) caps it
    assert all(m["Subject"] == "Someone tried to use your email address" for m in notices)
    assert "mallory" not in notices[0].get_content()  # nothing about the other account


def test_two_accounts_confirming_one_address_at_once_give_one_owner(app, mailbox, sql):
    """Both accounts belong to whoever reads the mailbox; the database decides, never a 500."""
    clients = [app.test_client() for _ in range(2)]
    for i, client in enumerate(clients):
        assert sign_up(client, f"twin{i}", "twin@example.com").status_code == 201
    messages = mailbox.deliver()
    assert len(messages) == 2
    barrier = threading.Barrier(2)

    def go(i):
        token = link_token(messages[i])
        barrier.wait()
        return clients[i].post("/email-verification/confirm", json={"token": token}).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(go, range(2)))
    assert statuses == [200, 422]
    assert sql("SELECT count(*) FROM users WHERE email_verified_at IS NOT NULL") == [(1,)]


def test_signing_up_with_a_confirmed_address_mails_its_owner_not_a_link(
    app, client, verified, mailbox
):
    verified("bob")
    assert sign_up(client, "mallory", "bob@example.com").status_code == 201
    [message] = mailbox.deliver()
    assert message["To"] == "bob@example.com"
    assert message["Subject"] == "Someone tried to use your email address"
    assert "#token=" not in message.get_content()  # no link that could confirm it for mallory
    assert "mallory" not in message.get_content()


def test_confirming_an_address_someone_else_confirmed_meanwhile_is_a_422(
    app, client, verified, mailbox, sql
):
    """A claimant's link minted while the owner confirmed (the sender mints links as it sends):
    confirming it is a 422, never a 500."""
    from datetime import timedelta

    from sqlalchemy import select

    from config import db
    from models import User
    from tokens import mint_link_token

    assert sign_up(client, "mallory", "elsewhere@example.com").status_code == 201
    mailbox.deliver()
    verified("bob")
    with app.app_context():
        mallory = db.session.scalar(select(User).where(User.username == "mallory"))
        mallory.email = "bob@example.com"  # an unverified claim to bob's confirmed address
        token = mint_link_token(mallory, "email_verification", timedelta(days=1), "bob@example.com")
        db.session.commit()
    response = client.post("/email-verification/confirm", json={"token": token})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"] == {
        "token": ["Another account confirmed this address first."]
    }
    assert sql("SELECT count(*) FROM users WHERE email_verified_at IS NOT NULL") == [(1,)]


def test_the_owner_of_a_confirmed_address_hears_of_attempts_at_most_a_few_times(
    app, verified, mailbox
):
    verified("bob")
    for i in range(3):
        squatter = app.test_client()
        assert sign_up(squatter, f"squat{i}", "bob@example.com").status_code == 201
        for _ in range(4):
            squatter.post("/me/email-verification")
    notices = [m for m in mailbox.deliver() if m["To"] == "bob@example.com"]
    assert 1 <= len(notices) <= 5  # RATELIMIT_EMAIL_VERIFICATION per address, whatever asks
