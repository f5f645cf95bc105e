"""Passkeys through the API, with a software authenticator (tests/authenticator.py) standing in
for a phone or a security key: register, log in naming no one, as the second step of a login,
and to confirm it is you; what each refuses."""

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import text

from authenticator import SoftAuthenticator, b64url
from config import db
from conftest import login

ORIGIN = "https://app.example.com"  # FRONTEND_URL in the tests: the relying party's page


def events(client):
    return [e["type"] for e in client.get("/me/security-events").get_json()]


def add_passkey(client, authenticator, name=None):
    options = client.post("/me/passkeys/options")
    assert options.status_code == 200, options.get_json()
    credential = authenticator.create(options.get_json(), ORIGIN)
    body = {"credential": credential, **({"name": name} if name else {})}
    return client.post("/me/passkeys", json=body)


def passkey_login(client, authenticator, **answer):
    options = client.post("/login/passkey/options").get_json()
    return client.post(
        "/login/passkey", json={"credential": authenticator.get(options, ORIGIN, **answer)}
    )


@pytest.fixture
def alice(verified):
    """alice, logged in, verified address, with a passkey on her authenticator."""
    client = verified("alice")
    client.authenticator = SoftAuthenticator()
    response = add_passkey(client, client.authenticator, name="Phone")
    assert response.status_code == 201, response.get_json()
    client.passkey = response.get_json()
    return client


def test_registering_a_passkey(alice, mailbox):
    assert set(alice.passkey) == {"id", "name", "created_at", "last_used_at"}
    assert alice.passkey["name"] == "Phone" and alice.passkey["last_used_at"] is None
    assert alice.get("/me/passkeys").get_json() == [alice.passkey]
    assert alice.get("/me/mfa").get_json()["passkeys"] == 1
    assert "passkey_added" in events(alice)
    subjects = [m["Subject"] for m in mailbox.deliver()]
    assert "A passkey was added" in subjects


def test_the_creation_options_ask_for_a_discoverable_credential_and_user_verification(alice):
    options = alice.post("/me/passkeys/options").get_json()
    assert options["rp"]["id"] == "app.example.com"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["user"]["name"] == "alice"
    # the passkey alice has is excluded, so an authenticator does not make a second one
    excluded = [c["id"] for c in options["excludeCredentials"]]
    assert excluded == [b64url(alice.authenticator.credentials[0].id)]


def test_a_registration_answer_is_good_once_and_only_with_user_verification(verified):
    bob = verified("bob")
    authenticator = SoftAuthenticator()
    options = bob.post("/me/passkeys/options").get_json()
    credential = authenticator.create(options, ORIGIN)
    assert bob.post("/me/passkeys", json={"credential": credential}).status_code == 201
    again = bob.post("/me/passkeys", json={"credential": credential})
    assert again.status_code == 422 and list(again.get_json()["errors"]) == ["credential"]
    options = bob.post("/me/passkeys/options").get_json()
    unverified = SoftAuthenticator().create(options, ORIGIN, user_verified=False)
    assert bob.post("/me/passkeys", json={"credential": unverified}).status_code == 422
    options = bob.post("/me/passkeys/options").get_json()
    elsewhere = SoftAuthenticator().create(options, "https://evil.example.net")
    assert bob.post("/me/passkeys", json={"credential": elsewhere}).status_code == 422
    assert bob.get("/me/mfa").get_json()["passkeys"] == 1


def test_a_passkey_logs_in_alone_naming_no_one(app, alice):
    client = app.test_client()
    response = passkey_login(client, alice.authenticator)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["username"] == "alice"
    assert client.get("/check_session").status_code == 200
    assert {"passkey_login", "login"} <= set(events(alice))
    assert alice.get("/me/passkeys").get_json()[0]["last_used_at"] is not None


def test_a_passkey_login_refuses_with_one_answer(app, alice):
    client = app.test_client()
    failures = [
        passkey_login(client, alice.authenticator, user_verified=False),
        passkey_login(client, alice.authenticator, wrong_key=True),
        passkey_login(client, alice.authenticator, rp_id="x.example"),
    ]
    options = client.post("/login/passkey/options").get_json()
    credential = alice.authenticator.get(options, "https://evil.example.net")
    failures.append(client.post("/login/passkey", json={"credential": credential}))
    stranger = SoftAuthenticator()
    stranger.create(alice.post("/me/passkeys/options").get_json(), ORIGIN)  # never registered
    failures.append(passkey_login(client, stranger))
    assert [r.status_code for r in failures] == [401] * 5
    assert all(r.get_json() == {"error": "That passkey could not be verified."} for r in failures)
    assert client.get("/check_session").status_code == 401


def test_an_answer_and_its_challenge_are_good_once(app, alice):
    client = app.test_client()
    assert passkey_login(client, alice.authenticator).status_code == 200
    again = client.post("/login/passkey", json={"credential": alice.authenticator.replay()})
    assert again.status_code == 401  # the challenge is used up
    options = client.post("/login/passkey/options").get_json()
    stale = alice.authenticator.get(options, ORIGIN, sign_count=1)  # the counter went back
    assert client.post("/login/passkey", json={"credential": stale}).status_code == 401


def test_a_challenge_lasts_five_minutes(app, alice):
    client = app.test_client()
    with time_machine.travel(timedelta(0), tick=False):
        options = client.post("/login/passkey/options").get_json()
    with time_machine.travel(timedelta(minutes=5, seconds=1), tick=False):
        credential = alice.authenticator.get(options, ORIGIN)
        assert client.post("/login/passkey", json={"credential": credential}).status_code == 401


def test_a_disabled_account_cannot_log_in_with_its_passkey(app, alice):
    with app.app_context():
        db.session.execute(text("UPDATE users SET disabled_at = CURRENT_TIMESTAMP"))
        db.session.commit()
    assert passkey_login(app.test_client(), alice.authenticator).status_code == 401


def test_a_passkey_is_a_second_factor_after_the_password(app, alice):
    client = app.test_client()
    response = login(client)
    assert response.status_code == 401
    assert response.get_json()["methods"] == ["passkey"]  # no recovery codes made yet
    options = client.post("/login/mfa/passkey/options").get_json()
    assert [c["id"] for c in options["allowCredentials"]] != []
    wrong = alice.authenticator.get(options, ORIGIN, wrong_key=True)
    assert client.post("/login/mfa/passkey", json={"credential": wrong}).status_code == 401
    options = client.post("/login/mfa/passkey/options").get_json()
    answer = alice.authenticator.get(options, ORIGIN)
    response = client.post("/login/mfa/passkey", json={"credential": answer})
    assert response.status_code == 200, response.get_json()
    assert client.get("/check_session").status_code == 200
    assert app.test_client().post("/login/mfa/passkey/options").status_code == 401  # no pending


def test_a_passkey_confirms_it_is_you(alice):
    with time_machine.travel(timedelta(minutes=6), tick=False):
        refused = alice.post("/me/passkeys/options")
        assert refused.status_code == 403
        assert refused.get_json()["methods"] == ["password", "passkey"]
        options = alice.post("/reauthenticate/passkey/options").get_json()
        answer = alice.authenticator.get(options, ORIGIN)
        assert alice.post("/reauthenticate/passkey", json={"credential": answer}).status_code == 204
        assert alice.post("/me/passkeys/options").status_code == 200
    assert "reauthenticated" in events(alice)


def test_renaming_and_removing(alice, mailbox):
    mailbox.deliver()
    url = f"/me/passkeys/{alice.passkey['id']}"
    renamed = alice.patch(url, json={"name": "  Laptop  "})
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Laptop"
    assert alice.patch(url, json={"name": ""}).status_code == 422
    assert alice.patch("/me/passkeys/999", json={"name": "x"}).status_code == 404
    assert alice.delete(url).status_code == 204
    assert alice.delete(url).status_code == 404
    assert alice.get("/me/mfa").get_json()["passkeys"] == 0
    assert "passkey_removed" in events(alice)
    assert "A passkey was removed" in [m["Subject"] for m in mailbox.deliver()]


def test_someone_elses_passkey_is_not_found(verified, alice, mailbox):
    mailbox.deliver()  # alice's, so that bob's verification is the one message
    bob = verified("bob")
    assert bob.delete(f"/me/passkeys/{alice.passkey['id']}").status_code == 404
    assert bob.patch(f"/me/passkeys/{alice.passkey['id']}", json={"name": "x"}).status_code == 404


def test_a_user_holds_at_most_twenty_passkeys(verified):
    bob = verified("bob")
    for _ in range(20):  # one authenticator each: one refuses to make a second for bob
        assert add_passkey(bob, SoftAuthenticator()).status_code == 201
    response = add_passkey(bob, SoftAuthenticator())
    assert response.status_code == 422
    assert "20 passkeys" in response.get_json()["errors"]["credential"][0]
    assert bob.get("/me/mfa").get_json()["passkeys"] == 20


def test_confirming_it_is_you_with_a_passkey_while_adding_one_keeps_both_challenges(alice):
    """Adding a passkey, the session turns out not recent: confirming with a passkey (another
    ceremony, another challenge) must not spoil the one being added."""
    second = SoftAuthenticator()
    # begin adding, confirm with the first passkey, then finish adding
    alice_options = alice.post("/me/passkeys/options").get_json()
    step_up = alice.post("/reauthenticate/passkey/options").get_json()
    answer = alice.authenticator.get(step_up, ORIGIN)
    assert alice.post("/reauthenticate/passkey", json={"credential": answer}).status_code == 204
    credential = second.create(alice_options, ORIGIN)
    assert alice.post("/me/passkeys", json={"credential": credential}).status_code == 201
