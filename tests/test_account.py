"""Profile, email, password change and reset, deletion, and the security history."""

import json
import logging
import re
from datetime import timedelta

import pytest
import time_machine

from config import db
from conftest import PASSWORD, cookie_of, link_token, login, replay
from models import User

NEW_PASSWORD = "a brand new passphrase"
RESET_ACCEPTED = {
    "message": "If an account has this verified address, a link to reset its password is on "
    "its way."
}


def stored_hash(sql, username="alice"):
    return sql("SELECT password_hash FROM users WHERE username = :u", u=username)[0][0]


# --- profile ---


def test_me_is_the_owner_view(signup):
    alice = signup("alice", email="alice@example.com")
    response = alice.get("/me")
    assert response.status_code == 200
    assert response.get_json() == {
        "id": alice.user["id"],
        "username": "alice",
        "created_at": alice.user["created_at"],
        "email": "alice@example.com",
        "email_verified": False,
        "role": "user",
    }


def test_me_needs_login(client):
    assert client.get("/me").status_code == 401


def test_change_username(signup):
    alice = signup("alice")
    response = alice.patch("/me", json={"username": "alicia"})
    assert response.status_code == 200 and response.get_json()["username"] == "alicia"
    assert login(alice, "alicia").status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": "BOB"}, "username"),  # taken, in another case
        ({"username": "x"}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"email": 5}, "email"),
        ({"role": "admin"}, "role"),  # nobody sets their own role
        ({"id": 1}, "id"),
        ({}, "_schema"),
    ],
)
def test_profile_rules(signup, body, field, sql):
    signup("bob", email="bob@example.com")
    alice = signup("alice")
    response = alice.patch("/me", json=body)
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == [field]
    assert sql("SELECT username, email, role FROM users WHERE id = :i", i=alice.user["id"]) == [
        ("alice", None, "user")
    ]


def test_signup_email_rules(client, signup, sql):
    signup("bob", email="Bob@Example.com")
    bad = client.post("/signup", json={"username": "alice", "password": PASSWORD, "email": "x@"})
    assert bad.status_code == 422 and list(bad.get_json()["errors"]) == ["email"]
    assert sql("SELECT count(*) FROM users") == [(1,)]


def test_changing_email_unverifies_it_and_tells_the_old_address(verified, mailbox):
    alice = verified("alice")
    response = alice.patch(
        "/me", json={"email": "new-alice@example.com", "current_password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.get_json()["email"] == "new-alice@example.com"
    assert response.get_json()["email_verified"] is False
    [notice] = mailbox.deliver()
    assert notice["To"] == "alice@example.com"
    assert notice["Subject"] == "Your email address was changed"
    assert "new-alice@example.com" in notice.get_content()


def test_removing_the_email(verified):
    alice = verified("alice")
    body = alice.patch("/me", json={"email": None, "current_password": PASSWORD}).get_json()
    assert (body["email"], body["email_verified"]) == (None, False)


# --- email verification and login by email ---


def test_signup_with_email_mails_a_confirmation_link(signup, mailbox):
    alice = signup("alice", email="alice@example.com")
    [message] = mailbox.deliver()
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Confirm your email address"
    token = link_token(message)
    assert len(token) >= 43  # 256 bits

    confirmed = alice.post("/email-verification/confirm", json={"token": token})
    assert confirmed.status_code == 200
    assert confirmed.get_json()["email_verified"] is True
    again = alice.post("/email-verification/confirm", json={"token": token})
    assert again.status_code == 422  # single use
    assert again.get_json()["errors"] == {
        "token": ["This link is invalid, already used or expired."]
    }


def test_confirmation_works_without_being_logged_in(signup, client, mailbox):
    signup("alice", email="alice@example.com")
    token = link_token(mailbox.deliver()[0])
    assert client.post("/email-verification/confirm", json={"token": token}).status_code == 200


def test_request_a_new_confirmation(signup, mailbox):
    alice = signup("alice", email="alice@example.com")
    mailbox.deliver()
    response = alice.post("/me/email-verification")
    assert response.status_code == 202
    [message] = mailbox.deliver()
    assert (
        alice.post("/email-verification/confirm", json={"token": link_token(message)}).status_code
        == 200
    )
    assert alice.post("/me/email-verification").status_code == 422  # already verified


def test_verification_needs_an_email(signup):
    response = signup("alice").post("/me/email-verification")
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["email"]


def test_a_link_for_a_previous_address_does_not_verify_the_new_one(signup, mailbox):
    alice = signup("alice", email="alice@example.com")
    token = link_token(mailbox.deliver()[0])
    alice.patch("/me", json={"email": "other@example.com", "current_password": PASSWORD})
    assert alice.post("/email-verification/confirm", json={"token": token}).status_code == 422
    assert alice.get("/me").get_json()["email_verified"] is False


def test_verification_links_expire(signup, mailbox):
    alice = signup("alice", email="alice@example.com")
    with time_machine.travel(timedelta(0), tick=False) as clock:
        token = link_token(mailbox.deliver()[0])
        clock.shift(timedelta(days=2, seconds=1))
        assert alice.post("/email-verification/confirm", json={"token": token}).status_code == 422


@pytest.mark.parametrize("token", ["x", "nope" * 11, 123, None])
def test_bad_verification_tokens_are_422(client, token):
    assert client.post("/email-verification/confirm", json={"token": token}).status_code == 422


def test_verification_requests_are_limited(signup, mailbox):
    alice = signup("alice", email="alice@example.com")
    statuses = [alice.post("/me/email-verification").status_code for _ in range(6)]
    assert statuses == [202] * 5 + [429]


def test_login_by_verified_email(verified, client):
    verified("alice")
    assert login(client, "ALICE@example.com").status_code == 200


def test_no_login_by_an_unverified_email(signup, client):
    signup("alice", email="alice@example.com")
    response = login(client, "alice@example.com")
    assert response.status_code == 401
    assert response.get_json() == {"error": "Invalid username or password."}


# --- password change ---


def test_change_password_ends_other_sessions_and_tokens_but_keeps_this_one(app, signup, sql):
    alice = signup("alice")
    other = app.test_client()
    login(other)
    stolen = cookie_of(other)
    token = other.post("/tokens", json={"username": "alice", "password": PASSWORD}).get_json()
    before = cookie_of(alice)

    response = alice.put(
        "/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204
    assert alice.get("/check_session").status_code == 200
    assert cookie_of(alice) != before  # the current session got a new id
    assert replay(app, before).get("/check_session").status_code == 401
    assert other.get("/check_session").status_code == 401
    assert replay(app, stolen).get("/check_session").status_code == 401
    bearer = {"Authorization": f"Bearer {token['token']}"}
    assert app.test_client().get("/check_session", headers=bearer).status_code == 401
    assert sql("SELECT count(*) FROM sessions") == [(1,)]
    assert login(app.test_client()).status_code == 401
    assert login(app.test_client(), password=NEW_PASSWORD).status_code == 200


def test_wrong_current_password_is_403_and_changes_nothing(signup, sql):
    alice = signup("alice")
    before = stored_hash(sql)
    response = alice.put(
        "/me/password", json={"current_password": "wrong password", "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 403
    assert response.get_json() == {"error": "The current password is incorrect."}
    assert stored_hash(sql) == before


def test_wrong_current_passwords_are_throttled(signup):
    alice = signup("alice")
    body = {"current_password": "wrong password", "new_password": NEW_PASSWORD}
    statuses = [alice.put("/me/password", json=body).status_code for _ in range(6)]
    assert statuses == [403] * 5 + [429]


def test_password_change_notifies_by_mail(verified, mailbox):
    alice = verified("alice")
    alice.put("/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    [notice] = mailbox.deliver()
    assert (notice["To"], notice["Subject"]) == ("alice@example.com", "Your password was changed")
    assert NEW_PASSWORD not in notice.get_content()


@pytest.mark.parametrize(
    "password, message",
    [
        ("short", "Must be at least 8 characters."),
        ("password1234", "This is one of the most commonly used passwords."),
        ("iloveyou", "This is one of the most commonly used passwords."),
        (
            "123456789012",
            "Too easy to guess: avoid common words, names, dates, repeats and keyboard runs.",
        ),
        (
            "qwertyuiopas",
            "Too easy to guess: avoid common words, names, dates, repeats and keyboard runs.",
        ),
        ("alice-in-chains", "Must not be your username or email address."),
        ("ALICE-IN-CHAINS", "Must not be your username or email address."),
        ("x" * 1025, "Must be at most 1024 characters."),
    ],
)
def test_password_policy_says_which_rule(client, signup, password, message):
    response = client.post("/signup", json={"username": "alice-in-chains", "password": password})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"password": [message]}
    alice = signup("alice-in-chains")
    changed = alice.put(
        "/me/password", json={"current_password": PASSWORD, "new_password": password}
    )
    assert changed.status_code == 422
    assert changed.get_json()["errors"] == {"new_password": [message]}


def test_password_may_not_be_the_email(client):
    response = client.post(
        "/signup",
        json={
            "username": "alice",
            "email": "alice.w@example.com",
            "password": "Alice.W@example.com",
        },
    )
    assert response.get_json()["errors"] == {
        "password": ["Must not be your username or email address."]
    }


def test_raised_bcrypt_cost_upgrades_the_hash_at_the_next_login(app, signup, sql, monkeypatch):
    signup("alice")
    assert stored_hash(sql).startswith("$2b$04$")
    monkeypatch.setitem(app.config, "BCRYPT_LOG_ROUNDS", 5)
    assert login(app.test_client(), password="wrong password").status_code == 401
    assert stored_hash(sql).startswith("$2b$04$")  # only a successful login proves the password
    assert login(app.test_client()).status_code == 200
    assert stored_hash(sql).startswith("$2b$05$")
    assert login(app.test_client()).status_code == 200


# --- password reset ---


def request_reset(client, email="alice@example.com"):
    return client.post("/password-reset", json={"email": email})


@pytest.mark.parametrize(
    "email", ["alice@example.com", "ALICE@EXAMPLE.COM", "nobody@example.com", "bob@example.com"]
)
def test_reset_request_always_gets_the_same_answer(verified, signup, client, email, mailbox):
    verified("alice")
    signup("bobby", email="bob@example.com")  # unverified: no reset mail
    mailbox.deliver()
    response = request_reset(client, email)
    assert response.status_code == 202
    assert response.get_json() == RESET_ACCEPTED
    messages = mailbox.deliver()
    assert [m["To"] for m in messages] == (
        ["alice@example.com"] if "alice" in email.lower() else []
    )


def test_reset_request_does_the_same_work_for_known_and_unknown_addresses(verified, app, queries):
    verified("alice")
    counts = []
    for email in ("alice@example.com", "nobody@example.com"):
        with queries() as statements:
            request_reset(app.test_client(), email)
        counts.append([s.split()[0] for s in statements])
    assert counts[0] == counts[1]


def test_reset_flow_sets_the_password_and_ends_every_session_and_token(app, verified, mailbox, sql):
    alice = verified("alice")
    token = alice.post("/tokens", json={"username": "alice", "password": PASSWORD}).get_json()
    request_reset(app.test_client())
    [message] = mailbox.deliver()
    assert message["Subject"] == "Reset your password"
    link = re.search(r"https://\S+", message.get_content()).group(0)
    assert link.startswith("https://app.example.com/reset-password#token=")

    response = app.test_client().post(
        "/password-reset/confirm", json={"token": link_token(message), "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204
    assert alice.get("/check_session").status_code == 401
    bearer = {"Authorization": f"Bearer {token['token']}"}
    assert app.test_client().get("/me", headers=bearer).status_code == 401
    assert sql("SELECT count(*) FROM sessions") == [(0,)]
    assert login(app.test_client()).status_code == 401
    assert login(app.test_client(), password=NEW_PASSWORD).status_code == 200
    subjects = sorted(m["Subject"] for m in mailbox.deliver())
    assert subjects == ["A login from a new browser", "Your password was changed"]


def test_reset_tokens_are_single_use_and_older_ones_die_too(app, verified, mailbox):
    verified("alice")
    client = app.test_client()
    request_reset(client)
    request_reset(client)
    first, second = (link_token(m) for m in mailbox.deliver())
    confirm = {"token": second, "new_password": NEW_PASSWORD}
    assert client.post("/password-reset/confirm", json=confirm).status_code == 204
    for token in (second, first):
        again = client.post(
            "/password-reset/confirm", json={"token": token, "new_password": "another one 42!"}
        )
        assert again.status_code == 422
        assert list(again.get_json()["errors"]) == ["token"]


def test_reset_links_expire_after_an_hour(app, verified, mailbox):
    verified("alice")
    with time_machine.travel(timedelta(0), tick=False) as clock:
        request_reset(app.test_client())
        token = link_token(mailbox.deliver()[0])
        clock.shift(timedelta(hours=1, seconds=1))
        response = app.test_client().post(
            "/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
        )
    assert response.status_code == 422


def test_a_weak_new_password_does_not_use_up_the_link(app, verified, mailbox):
    verified("alice")
    request_reset(app.test_client())
    token = link_token(mailbox.deliver()[0])
    client = app.test_client()
    weak = client.post(
        "/password-reset/confirm", json={"token": token, "new_password": "password1"}
    )
    assert weak.status_code == 422 and list(weak.get_json()["errors"]) == ["new_password"]
    good = client.post(
        "/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert good.status_code == 204


def test_reset_requests_are_limited_per_address_and_per_email(app, verified, mailbox):
    one_address = app.test_client()
    statuses = [request_reset(one_address, f"user{i}@example.com").status_code for i in range(6)]
    assert statuses == [202] * 5 + [429]
    verified("alice")
    mailbox.deliver()
    # Per email, silently: the same 202 for everyone, so nobody can block the owner's reset
    # with a 429, but no more than 5 mails an hour reach the address.
    statuses = [request_reset(app.test_client(), "Alice@example.com").status_code for _ in range(7)]
    assert statuses == [202] * 7
    assert len(mailbox.deliver()) == 5


def test_no_reset_for_a_disabled_account(app, verified, mailbox, sql):
    verified("alice")
    sql_update(app, "UPDATE users SET disabled_at = '2026-01-01 00:00:00'")
    request_reset(app.test_client())
    assert mailbox.deliver() == []


def sql_update(app, statement):
    with app.app_context():
        db.session.execute(db.text(statement))
        db.session.commit()


# --- deletion ---


def test_delete_account_removes_everything_at_once(app, signup, sql):
    alice = signup("alice")
    other = app.test_client()
    login(other)
    alice.post("/posts", json={"content": "mine"})
    alice.post("/tokens", json={"username": "alice", "password": PASSWORD})
    signup("bobby")

    wrong = alice.delete("/me", json={"password": "wrong password"})
    assert wrong.status_code == 403
    response = alice.delete("/me", json={"password": PASSWORD})
    assert response.status_code == 204
    assert "session=;" in response.headers["Set-Cookie"]
    for table in ("posts", "sessions", "api_tokens", "security_events", "one_time_tokens"):
        rows = sql(f"SELECT count(*) FROM {table} WHERE user_id = :i", i=alice.user["id"])
        assert rows == [(0,)], table
    assert sql("SELECT username FROM users") == [("bobby",)]
    assert other.get("/check_session").status_code == 401
    assert login(app.test_client()).status_code == 401


def test_delete_needs_a_body_with_the_password(signup):
    alice = signup("alice")
    assert alice.delete("/me").status_code == 415
    assert alice.delete("/me", json={}).status_code == 422


# --- the security history ---


def test_history_records_what_happened_newest_first(app, signup, caplog):
    with caplog.at_level(logging.INFO, logger="security"):
        alice = signup("alice")
        login(app.test_client(), password="wrong password")
        login(alice)
        alice.delete("/logout")
        login(alice)
        alice.put("/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    events = alice.get("/me/security-events").get_json()
    assert [e["type"] for e in events] == [
        "password_changed",
        "login",
        "logout",
        "login",
        "login_failed",
        "signup",
    ]
    assert set(events[0]) == {"id", "type", "created_at", "ip", "user_agent"}
    assert events[-1]["ip"] == alice.environ_base["REMOTE_ADDR"]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "security"]
    assert [line["event"] for line in lines] == [e["type"] for e in reversed(events)]
    text = caplog.text + json.dumps(events)
    assert PASSWORD not in text and NEW_PASSWORD not in text and "$2b$" not in text


def test_history_is_paginated_and_private(signup):
    alice = signup("alice")
    bob = signup("bobby")
    for _ in range(3):
        alice.delete("/logout")
        login(alice)
    page = alice.get("/me/security-events?limit=2")
    assert len(page.get_json()) == 2 and 'rel="next"' in page.headers["Link"]
    assert [e["type"] for e in bob.get("/me/security-events").get_json()] == ["signup"]


def test_lockout_is_recorded_once(signup, app):
    alice = signup("alice")
    attacker = app.test_client()
    for _ in range(8):
        login(attacker, password="wrong password")
    types = [e["type"] for e in alice.get("/me/security-events").get_json()]
    assert types.count("locked_out") == 1
    assert types.count("login_failed") == 5


def test_lesson_model_still_hashes_with_the_policy_free_setter(app):
    with app.app_context():
        user = User(username="direct", password_hash="x")  # the model hashes; policy is the API's
        db.session.add(user)
        db.session.commit()
        assert user.authenticate("x")
