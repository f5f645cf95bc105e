"""Second factors: TOTP with recovery codes, the login's second step, step-up for sensitive
routes, admins who must have a factor, and mail and history for each change."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pyotp
import pytest
import time_machine

from conftest import PASSWORD, cookie_of, enable_totp, login

SECOND_FACTOR = {
    "error": "A second factor is required.",
    "mfa_required": True,
    "methods": ["totp", "recovery_code"],
}


def code_at(secret, moment):
    return pyotp.TOTP(secret).at(moment)


def events(client):
    return [e["type"] for e in client.get("/me/security-events").get_json()]


@pytest.fixture
def alice(verified):
    """alice, logged in, with a verified address (mail reaches her) and TOTP on."""
    client = verified("alice")
    client.totp = enable_totp(client)
    return client


def second_step(app, username="alice"):
    """A new client past POST /login's password step, waiting for its second factor."""
    client = app.test_client()
    response = login(client, username)
    assert response.status_code == 401 and response.get_json() == SECOND_FACTOR
    return client


# --- enrolling ---


def test_enrolling_shows_a_secret_its_qr_code_and_then_ten_recovery_codes(verified, mailbox):
    client = verified("alice")
    assert client.get("/me/mfa").get_json() == {
        "totp": False,
        "passkeys": 0,
        "recovery_codes_left": 0,
        "required": False,
    }
    setup = client.post("/me/mfa/totp").get_json()
    assert set(setup) == {"secret", "otpauth_uri", "qr_svg"}
    assert setup["otpauth_uri"].startswith("otpauth://totp/Flask%20IAM%20API:alice%40example.com?")
    assert f"secret={setup['secret']}" in setup["otpauth_uri"]
    assert setup["qr_svg"].startswith("<svg") and "</svg>" in setup["qr_svg"]
    assert client.get("/me/mfa").get_json()["totp"] is False  # pending until confirmed

    wrong = client.post("/me/mfa/totp/confirm", json={"code": "000000"})
    assert wrong.status_code == 422 and list(wrong.get_json()["errors"]) == ["code"]
    code = pyotp.TOTP(setup["secret"]).now()
    codes = client.post("/me/mfa/totp/confirm", json={"code": code}).get_json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(len(c) == 14 and c.count("-") == 2 for c in codes)  # xxxx-xxxx-xxxx
    assert client.get("/me/mfa").get_json() == {
        "totp": True,
        "passkeys": 0,
        "recovery_codes_left": 10,
        "required": False,
    }
    assert "mfa_enabled" in events(client)
    [mail] = mailbox.deliver()
    assert mail["Subject"] == "Two-factor authentication is on"


def test_confirming_needs_a_pending_secret_and_turning_on_twice_is_refused(alice):
    response = alice.post("/me/mfa/totp/confirm", json={"code": "123456"})
    assert response.status_code == 422  # nothing pending: TOTP is on already
    response = alice.post("/me/mfa/totp")
    assert response.status_code == 422
    assert "already on" in response.get_json()["error"]


def test_the_secret_is_encrypted_and_the_recovery_codes_hashed_at_rest(alice, sql):
    [(stored,)] = sql("SELECT secret FROM totp_factors")
    assert alice.totp["secret"] not in stored
    hashes = [row[0] for row in sql("SELECT code_hash FROM recovery_codes")]
    assert len(hashes) == 10
    assert not set(hashes) & {c.replace("-", "") for c in alice.totp["recovery_codes"]}


# --- logging in ---


def test_a_password_alone_is_not_a_login_then_a_code_makes_one(app, alice, mailbox):
    mailbox.deliver()
    client = second_step(app)
    pending_cookie = client.get_cookie("pending_login")
    assert pending_cookie is not None and pending_cookie.http_only
    assert client.get_cookie("session") is None
    assert client.get("/check_session").status_code == 401

    with time_machine.travel(timedelta(seconds=31), tick=False):  # the next code
        code = pyotp.TOTP(alice.totp["secret"]).now()
        response = client.post("/login/mfa", json={"code": code})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["username"] == "alice"
    assert client.get_cookie("session").value != pending_cookie.value
    assert client.get_cookie("pending_login") is None
    assert client.get("/check_session").status_code == 200
    assert client.post("/login/mfa", json={"code": code}).status_code == 401  # nothing pending


def test_a_code_is_good_once(app, alice):
    with time_machine.travel(timedelta(seconds=31), tick=False):
        code = pyotp.TOTP(alice.totp["secret"]).now()
        assert second_step(app).post("/login/mfa", json={"code": code}).status_code == 200
        again = second_step(app).post("/login/mfa", json={"code": code})
    assert again.status_code == 401
    assert again.get_json() == {"error": "That code is not right."}


@pytest.mark.parametrize("steps, accepted", [(-2, False), (-1, True), (1, True), (2, False)])
def test_one_step_of_drift_either_way(app, alice, steps, accepted):
    with time_machine.travel(timedelta(minutes=2), tick=False):
        client = second_step(app)
        moment = int(time.time()) + steps * 30  # the clock stands still: no step boundary
        response = client.post("/login/mfa", json={"code": code_at(alice.totp["secret"], moment)})
    assert (response.status_code == 200) is accepted, response.get_json()


def test_recovery_codes_are_single_use_and_say_so_by_mail(app, alice, mailbox):
    mailbox.deliver()
    code = alice.totp["recovery_codes"][3]
    typed = code.upper().replace("-", " ")  # as someone might type it
    response = second_step(app).post("/login/mfa", json={"recovery_code": typed})
    assert response.status_code == 200
    assert second_step(app).post("/login/mfa", json={"recovery_code": code}).status_code == 401
    assert alice.get("/me/mfa").get_json()["recovery_codes_left"] == 9
    assert {"recovery_code_used", "login"} <= set(events(alice))
    [new_browser, mail] = mailbox.deliver()
    assert mail["Subject"] == "A recovery code was used"
    assert "9 are left" in mail.get_content()
    assert new_browser["Subject"] == "A login from a new browser"


def test_the_second_step_takes_exactly_one_of_code_and_recovery_code(app, alice):
    client = second_step(app)
    for body in ({}, {"code": "1", "recovery_code": "2"}):
        response = client.post("/login/mfa", json=body)
        assert response.status_code == 422
        assert list(response.get_json()["errors"]) == ["_schema"]


def test_a_pending_login_lasts_five_minutes(app, alice):
    with time_machine.travel(timedelta(seconds=0), tick=False):
        client = second_step(app)
    with time_machine.travel(timedelta(minutes=5, seconds=1), tick=False):
        code = pyotp.TOTP(alice.totp["secret"]).now()
        response = client.post("/login/mfa", json={"code": code})
    assert response.status_code == 401
    assert "No login is waiting" in response.get_json()["error"]


def test_a_pending_login_ends_after_five_wrong_codes(app, alice):
    client = second_step(app)
    client.environ_base["REMOTE_ADDR"] = "10.9.0.1"
    statuses = [client.post("/login/mfa", json={"code": "000000"}).status_code for _ in range(5)]
    assert statuses == [401] * 5
    client.environ_base["REMOTE_ADDR"] = "10.9.0.3"
    with time_machine.travel(timedelta(seconds=31), tick=False):
        code = pyotp.TOTP(alice.totp["secret"]).now()
        response = client.post("/login/mfa", json={"code": code})
    assert response.status_code == 401  # another address: not the limit, the login is over
    assert "No login is waiting" in response.get_json()["error"]
    assert client.get("/check_session").status_code == 401
    assert "mfa_failed" in events(alice)


def test_wrong_codes_at_once_meet_the_login_limit(app, alice):
    """Forty wrong codes at the same moment, from one address: at most the account's limit
    (RATELIMIT_LOGIN_ACCOUNT, 5) are checked, however they interleave."""
    clients = []
    for _ in range(8):
        client = second_step(app)
        client.environ_base["REMOTE_ADDR"] = "10.9.0.2"
        clients.append(client)
    barrier = threading.Barrier(40)

    def guess(i):
        barrier.wait()
        return clients[i % 8].post("/login/mfa", json={"code": f"{i:06d}"}).status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(guess, range(40)))
    assert statuses.count(401) <= 5, statuses
    assert statuses.count(401) + statuses.count(429) == 40


def test_one_right_code_sent_twice_at_once_makes_one_session(app, alice):
    with time_machine.travel(timedelta(seconds=31), tick=False):
        code = pyotp.TOTP(alice.totp["secret"]).now()
        clients = [second_step(app) for _ in range(2)]
        barrier = threading.Barrier(2)

        def send(client):
            barrier.wait()
            return client.post("/login/mfa", json={"code": code}).status_code

        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(send, clients))
    assert statuses == [200, 401]


def test_a_password_change_ends_a_pending_login(app, alice):
    client = second_step(app)
    with time_machine.travel(timedelta(seconds=31), tick=False):
        body = {"current_password": PASSWORD, "new_password": "another long passphrase"}
        assert alice.put("/me/password", json=body).status_code == 204
        code = pyotp.TOTP(alice.totp["secret"]).now()
        assert client.post("/login/mfa", json={"code": code}).status_code == 401


def test_an_api_token_needs_the_code_too(app, alice):
    client = app.test_client()
    body = {"username": "alice", "password": PASSWORD}
    response = client.post("/tokens", json=body)
    assert response.status_code == 401 and response.get_json() == SECOND_FACTOR
    wrong = client.post("/tokens", json={**body, "code": "000000"})
    assert wrong.status_code == 401 and wrong.get_json()["mfa_required"] is True
    with time_machine.travel(timedelta(seconds=31), tick=False):
        code = pyotp.TOTP(alice.totp["secret"]).now()
        assert client.post("/tokens", json={**body, "code": code}).status_code == 201


# --- step-up ---


def test_sensitive_routes_want_a_recent_authentication(alice):
    with time_machine.travel(timedelta(minutes=6), tick=False):
        response = alice.post("/me/mfa/recovery-codes")
        assert response.status_code == 403
        assert response.get_json() == {
            "error": "Please confirm it is you.",
            "reauthentication_required": True,
            "methods": ["password", "totp"],
        }
        assert alice.post("/reauthenticate", json={"password": "wrong"}).status_code == 401
        assert alice.post("/reauthenticate", json={"password": PASSWORD}).status_code == 204
        response = alice.post("/me/mfa/recovery-codes")
        assert response.status_code == 200 and len(response.get_json()["recovery_codes"]) == 10
    with time_machine.travel(timedelta(minutes=12), tick=False):
        assert alice.post("/me/mfa/recovery-codes").status_code == 403  # the window passed
        code = pyotp.TOTP(alice.totp["secret"]).now()
        assert alice.post("/reauthenticate", json={"code": code}).status_code == 204
        assert alice.delete("/me/mfa/totp").status_code == 204
    assert {"reauthenticated", "recovery_codes_regenerated", "mfa_disabled"} <= set(events(alice))


def test_a_password_change_wants_a_recent_authentication_only_with_a_second_factor(
    verified, alice, mailbox
):
    mailbox.deliver()  # alice's, so that bob's verification is the one message
    bob = verified("bob")
    body = {"current_password": PASSWORD, "new_password": "another long passphrase"}
    with time_machine.travel(timedelta(minutes=6), tick=False):
        assert bob.put("/me/password", json=body).status_code == 204
        response = alice.put("/me/password", json=body)
        assert response.status_code == 403 and response.get_json()["reauthentication_required"]
        assert alice.post("/reauthenticate", json={"password": PASSWORD}).status_code == 204
        assert alice.put("/me/password", json=body).status_code == 204


def test_turning_totp_off_removes_its_recovery_codes_and_the_second_step(app, alice, mailbox):
    mailbox.deliver()
    assert alice.delete("/me/mfa/totp").status_code == 204
    assert alice.delete("/me/mfa/totp").status_code == 404
    assert alice.get("/me/mfa").get_json()["recovery_codes_left"] == 0
    assert login(app.test_client()).status_code == 200
    subjects = [m["Subject"] for m in mailbox.deliver()]
    assert subjects == ["Two-factor authentication was turned off", "A login from a new browser"]


def test_new_recovery_codes_void_the_old_ones(app, alice):
    old = alice.totp["recovery_codes"]
    new = alice.post("/me/mfa/recovery-codes").get_json()["recovery_codes"]
    assert not set(old) & set(new)
    assert second_step(app).post("/login/mfa", json={"recovery_code": old[0]}).status_code == 401
    assert second_step(app).post("/login/mfa", json={"recovery_code": new[0]}).status_code == 200


def test_recovery_codes_need_a_factor(verified):
    response = verified("bob").post("/me/mfa/recovery-codes")
    assert response.status_code == 422


def test_a_password_reset_keeps_the_second_factor(app, alice, mailbox):
    mailbox.deliver()
    assert app.test_client().post("/password-reset", json={"email": "alice@example.com"})
    from conftest import link_token

    [mail] = mailbox.deliver()
    body = {"token": link_token(mail), "new_password": "another long passphrase"}
    assert app.test_client().post("/password-reset/confirm", json=body).status_code == 204
    client = app.test_client()
    response = login(client, password="another long passphrase")
    assert response.status_code == 401 and response.get_json()["mfa_required"] is True


# --- administrators ---


def test_an_admin_without_a_second_factor_is_sent_to_set_one_up(app, verified):
    admin = verified("root")
    app.test_cli_runner().invoke(args=["users", "promote", "root"])
    response = admin.get("/admin/users")
    assert response.status_code == 403
    assert response.get_json()["mfa_setup_required"] is True
    assert admin.get("/me/mfa").get_json()["required"] is True
    enable_totp(admin)
    assert admin.get("/admin/users").status_code == 200


def test_an_admin_removes_a_users_factors_and_the_user_hears_of_it(app, verified, alice, mailbox):
    mailbox.deliver()  # alice's, so that root's verification is the one message
    admin = verified("root")
    enable_totp(admin)
    app.test_cli_runner().invoke(args=["users", "promote", "root"])
    mailbox.deliver()
    turn_on = admin.patch(f"/admin/users/{alice.user['id']}", json={"mfa": True})
    assert turn_on.status_code == 422
    response = admin.patch(f"/admin/users/{alice.user['id']}", json={"mfa": False})
    assert response.status_code == 200
    assert alice.get("/me/mfa").get_json()["totp"] is False
    assert "mfa_disabled" in events(alice)
    assert [m["To"] for m in mailbox.deliver()] == ["alice@example.com"]
    assert login(app.test_client()).status_code == 200
    with time_machine.travel(timedelta(minutes=6), tick=False):
        stale = admin.patch(f"/admin/users/{alice.user['id']}", json={"role": "admin"})
        assert stale.status_code == 403 and stale.get_json()["reauthentication_required"]


def test_the_session_cookie_is_a_new_key_after_the_second_step(app, alice):
    before = cookie_of(alice)
    client = second_step(app)
    with time_machine.travel(timedelta(seconds=31), tick=False):
        code = pyotp.TOTP(alice.totp["secret"]).now()
        assert client.post("/login/mfa", json={"code": code}).status_code == 200
    assert cookie_of(client) != before


# --- browsers new to the account ---


def test_a_login_from_a_browser_new_to_the_account_is_mailed_and_recorded(app, verified, mailbox):
    alice = verified("alice")  # the sign-up's browser is known: no notice for it
    assert mailbox.deliver() == []
    assert login(alice).status_code == 200
    assert mailbox.deliver() == []

    laptop = app.test_client()
    laptop.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    response = login(laptop, headers={"User-Agent": "Firefox/140 on a laptop"})
    assert response.status_code == 200
    device = laptop.get_cookie("device")
    assert device is not None and device.http_only and device.expires is not None
    [mail] = mailbox.deliver()
    assert mail["Subject"] == "A login from a new browser"
    body = mail.get_content()
    assert "198.51.100.7" in body and "Firefox/140 on a laptop" in body and "UTC" in body
    assert "DELETE /sessions" in body  # how to end sessions
    assert events(laptop)[:2] == ["new_device_login", "login"]

    assert laptop.delete("/logout").status_code == 204
    assert login(laptop).status_code == 200  # the same browser again: known now
    assert mailbox.deliver() == []


def test_the_device_cookie_is_stored_hashed_per_user(app, verified, sql):
    verified("alice")
    client = app.test_client()
    assert login(client).status_code == 200
    key = client.get_cookie("device").value
    hashes = [row[0] for row in sql("SELECT device_hash FROM known_devices")]
    assert key not in hashes and len(hashes) == 2  # the sign-up's browser and this one


def test_secrets_reach_no_log_and_no_other_response(app, verified, caplog):
    """The TOTP secret is shown once (to set the app up) and recovery codes once; neither, nor a
    code typed, appears in the log, the history or any other answer."""
    import logging

    with caplog.at_level(logging.DEBUG):
        alice = verified("alice")
        totp = enable_totp(alice)
        client = second_step(app)
        with time_machine.travel(timedelta(seconds=31), tick=False):
            code = pyotp.TOTP(totp["secret"]).now()
            assert client.post("/login/mfa", json={"code": code}).status_code == 200
        recovery = totp["recovery_codes"][0]
        assert second_step(app).post("/login/mfa", json={"recovery_code": recovery}).status_code
        answers = [
            alice.get("/me/mfa").get_data(as_text=True),
            alice.get("/me/security-events").get_data(as_text=True),
            alice.get("/me").get_data(as_text=True),
        ]
    for secret in (totp["secret"], code, recovery, *totp["recovery_codes"]):
        assert secret not in caplog.text
        assert all(secret not in answer for answer in answers)


# --- found in review ---


def test_an_admins_power_over_posts_needs_the_factor_the_role_requires(app, verified, mailbox):
    bob = verified("bob")
    post = bob.post("/posts", json={"content": "mine"}).get_json()
    mailbox.deliver()
    root = verified("root")
    app.test_cli_runner().invoke(args=["users", "promote", "root"])
    refused = root.delete(f"/posts/{post['id']}")
    assert refused.status_code == 403 and refused.get_json()["mfa_setup_required"] is True
    enable_totp(root)
    assert root.delete(f"/posts/{post['id']}").status_code == 204


@pytest.mark.parametrize("code", ["１２３４５６", "١٢٣٤٥٦", "12 34 56x", "123-45"])
def test_codes_that_are_not_ascii_digits_are_wrong_codes_not_errors(app, alice, code):
    assert second_step(app).post("/login/mfa", json={"code": code}).status_code == 401
    assert alice.post("/reauthenticate", json={"code": code}).status_code == 401
    body = {"username": "alice", "password": PASSWORD, "code": code}
    assert app.test_client().post("/tokens", json=body).status_code == 401


def test_a_code_may_be_typed_with_spaces_or_a_dash(app, alice):
    with time_machine.travel(timedelta(seconds=31), tick=False):
        code = pyotp.TOTP(alice.totp["secret"]).now()
        typed = f"{code[:3]}-{code[3:]}"
        assert second_step(app).post("/login/mfa", json={"code": typed}).status_code == 200


def test_a_recovery_code_used_for_an_api_token_is_recorded_and_mailed(app, alice, mailbox):
    mailbox.deliver()
    body = {"username": "alice", "password": PASSWORD, "code": alice.totp["recovery_codes"][0]}
    assert app.test_client().post("/tokens", json=body).status_code == 201
    assert "recovery_code_used" in events(alice)
    assert [m["Subject"] for m in mailbox.deliver()] == ["A recovery code was used"]


def test_confirming_totp_wants_a_recent_authentication(verified):
    bob = verified("bob")
    setup = bob.post("/me/mfa/totp").get_json()
    with time_machine.travel(timedelta(minutes=6), tick=False):
        code = pyotp.TOTP(setup["secret"]).now()
        response = bob.post("/me/mfa/totp/confirm", json={"code": code})
        assert response.status_code == 403 and response.get_json()["reauthentication_required"]


def test_one_pending_login_gets_five_checks_however_many_addresses_guess_at_once(app, alice):
    """Forty guesses at once with one pending login, from forty addresses (each with a login
    budget of its own): the pending login's five attempts are reserved before any check."""
    client = second_step(app)
    cookie = client.get_cookie("pending_login").value
    barrier = threading.Barrier(40)

    def guess(i):
        guesser = app.test_client()
        guesser.set_cookie("pending_login", cookie)
        guesser.environ_base["REMOTE_ADDR"] = f"10.77.0.{i + 1}"
        barrier.wait()
        return guesser.post("/login/mfa", json={"code": f"{i:06d}"}).get_json()["error"]

    with ThreadPoolExecutor(40) as pool:
        errors = list(pool.map(guess, range(40)))
    assert errors.count("That code is not right.") <= 5, errors


def test_two_accounts_on_one_browser_have_unrelated_device_rows(app, verified, mailbox, sql):
    verified("alice")
    mailbox.deliver()
    verified("bob")
    browser = app.test_client()
    assert login(browser, "alice").status_code == 200
    assert browser.delete("/logout").status_code == 204
    assert login(browser, "bob").status_code == 200
    rows = sql("SELECT device_hash FROM known_devices")
    assert len(rows) == len({row[0] for row in rows}) == 4  # two sign-ups, two logins
