"""Devices (sessions) and API tokens."""

import hashlib
from datetime import timedelta

import pytest
import time_machine

from conftest import PASSWORD, login

EVIL = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}


def new_token(client, **extra):
    return client.post("/tokens", json={"username": "alice", "password": PASSWORD, **extra})


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


# --- sessions ---


def test_list_sessions_shows_each_device_and_which_is_current(app, signup):
    alice = signup("alice")
    phone = app.test_client()
    phone.post(
        "/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"User-Agent": "phone-browser/1"},
    )
    sessions = alice.get("/sessions").get_json()
    assert len(sessions) == 2
    assert set(sessions[0]) == {
        "id",
        "created_at",
        "last_seen_at",
        "expires_at",
        "ip",
        "user_agent",
        "current",
    }
    assert [s["current"] for s in sessions].count(True) == 1
    phone_session = next(s for s in sessions if not s["current"])
    assert phone_session["user_agent"] == "phone-browser/1"
    assert phone_session["ip"] == phone.environ_base["REMOTE_ADDR"]


def test_end_another_session(app, signup):
    alice = signup("alice")
    phone = app.test_client()
    login(phone)
    [phone_session] = [s for s in alice.get("/sessions").get_json() if not s["current"]]
    assert alice.delete(f"/sessions/{phone_session['id']}").status_code == 204
    assert phone.get("/check_session").status_code == 401
    assert alice.get("/check_session").status_code == 200
    assert alice.delete(f"/sessions/{phone_session['id']}").status_code == 404


def test_ending_the_current_session_logs_out(signup):
    alice = signup("alice")
    [current] = alice.get("/sessions").get_json()
    response = alice.delete(f"/sessions/{current['id']}")
    assert response.status_code == 204
    assert "session=;" in response.headers["Set-Cookie"]
    assert alice.get("/check_session").status_code == 401


def test_other_users_sessions_are_404_not_403(signup):
    alice = signup("alice")
    bob = signup("bobby")
    [bobs] = bob.get("/sessions").get_json()
    response = alice.delete(f"/sessions/{bobs['id']}")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Session not found."}
    assert bob.get("/check_session").status_code == 200


def test_log_out_everywhere_else(app, signup):
    alice = signup("alice")
    others = [app.test_client() for _ in range(3)]
    for other in others:
        login(other)
    assert alice.delete("/sessions").status_code == 204
    assert all(other.get("/check_session").status_code == 401 for other in others)
    assert alice.get("/check_session").status_code == 200
    assert len(alice.get("/sessions").get_json()) == 1


def test_expired_sessions_are_not_listed(app, signup):
    alice = signup("alice")
    with time_machine.travel(timedelta(0), tick=False) as clock:
        login(app.test_client())
        clock.shift(timedelta(hours=1, minutes=50))
        login(alice)  # alice's own session stays fresh
        clock.shift(timedelta(minutes=11))  # the other has now been idle for 2 h 1 min
        assert len(alice.get("/sessions").get_json()) == 1


def test_session_expiry_shown_is_when_it_would_end(signup, app):
    alice = signup("alice")
    [current] = alice.get("/sessions").get_json()
    idle = app.config["SESSION_IDLE_TIMEOUT"]
    shown = current["expires_at"]
    assert shown > current["last_seen_at"]
    from datetime import datetime

    gap = datetime.fromisoformat(shown) - datetime.fromisoformat(current["last_seen_at"])
    assert gap == idle


# --- API tokens ---


def test_create_a_token_shown_once_and_stored_as_a_hash(app, signup, sql):
    signup("alice")
    response = new_token(app.test_client(), name="deploy script", expires_in_days=30)
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "name", "token", "created_at", "expires_at"}
    assert body["name"] == "deploy script" and body["expires_at"] is not None
    secret = body["token"]
    assert secret.startswith("iam_") and len(secret) >= 4 + 43  # 256 random bits
    [(stored, hint)] = sql("SELECT token_hash, hint FROM api_tokens")
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(hint) and len(hint) < 12


def test_tokens_are_listed_without_secrets(app, signup):
    alice = signup("alice")
    secret = new_token(app.test_client()).get_json()["token"]
    [listed] = alice.get("/tokens").get_json()
    assert set(listed) == {"id", "name", "hint", "created_at", "expires_at", "last_used_at"}
    assert secret not in str(listed)
    assert listed["name"] == "API token"


def test_a_bearer_token_authenticates_any_protected_route_without_a_cookie(app, signup):
    signup("alice")
    secret = new_token(app.test_client()).get_json()["token"]
    client = app.test_client()
    assert client.get("/check_session", headers=bearer(secret)).get_json()["username"] == "alice"
    created = client.post("/posts", json={"content": "from a script"}, headers=bearer(secret))
    assert created.status_code == 201
    assert client.get("/tokens", headers=bearer(secret)).status_code == 200
    assert client.get_cookie("session") is None  # no session was created


def test_bearer_requests_skip_the_cross_site_check(app, signup):
    signup("alice")
    secret = new_token(app.test_client()).get_json()["token"]
    response = app.test_client().post(
        "/posts", json={"content": "x"}, headers={**bearer(secret), **EVIL}
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer iam_" + "x" * 43,
        "Bearer ",
        "Bearer",
        "Basic YWxpY2U6cHc=",
        "Bearer not-a-token",
        "Bearer iam_" + "x" * 5000,
    ],
)
def test_a_bad_bearer_token_is_401_and_never_falls_back_to_the_cookie(signup, authorization):
    alice = signup("alice")  # has a valid cookie
    response = alice.get("/check_session", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.get_json() == {"error": "Invalid or expired token."}


def test_revoked_and_expired_tokens_stop_working(app, signup):
    alice = signup("alice")
    with time_machine.travel(timedelta(0), tick=False) as clock:
        expiring = new_token(app.test_client(), expires_in_days=1).get_json()["token"]
        revoked = new_token(app.test_client()).get_json()
        client = app.test_client()
        assert client.get("/me", headers=bearer(expiring)).status_code == 200
        assert alice.delete(f"/tokens/{revoked['id']}").status_code == 204
        assert client.get("/me", headers=bearer(revoked["token"])).status_code == 401
        clock.shift(timedelta(days=1, seconds=1))
        assert client.get("/me", headers=bearer(expiring)).status_code == 401


def test_other_users_tokens_are_404(app, signup):
    signup("alice")
    bob = signup("bobby")
    token_id = new_token(app.test_client()).get_json()["id"]
    assert bob.delete(f"/tokens/{token_id}").status_code == 404
    assert bob.delete("/tokens/999999").status_code == 404


def test_token_requests_are_throttled_like_logins(app, signup):
    signup("alice")
    attacker = app.test_client()
    for _ in range(3):
        assert login(attacker, password="wrong password").status_code == 401
    wrong = {"username": "alice", "password": "wrong password"}
    statuses = [attacker.post("/tokens", json=wrong).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]  # the failures count together with the logins
    assert new_token(attacker).status_code == 429
    assert new_token(app.test_client()).status_code == 201


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"expires_in_days": "30"}, "expires_in_days"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 1.5}, "expires_in_days"),
        ({"expires_in_days": True}, "expires_in_days"),
        ({"expires_in_days": 1e300}, "expires_in_days"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"scope": "admin"}, "scope"),
    ],
)
def test_token_request_validation(app, signup, extra, field):
    signup("alice")
    response = new_token(app.test_client(), **extra)
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == [field]


def test_last_use_is_written_at_most_once_a_minute(app, signup, sql):
    signup("alice")
    secret = new_token(app.test_client()).get_json()["token"]
    client = app.test_client()
    with time_machine.travel(timedelta(0), tick=False) as clock:
        client.get("/me", headers=bearer(secret))
        first = sql("SELECT last_used_at FROM api_tokens")
        clock.shift(timedelta(seconds=30))
        client.get("/me", headers=bearer(secret))
        assert sql("SELECT last_used_at FROM api_tokens") == first
        clock.shift(timedelta(seconds=31))
        client.get("/me", headers=bearer(secret))
        assert sql("SELECT last_used_at FROM api_tokens") != first


def test_logout_with_a_bearer_token_revokes_that_token(app, signup):
    signup("alice")
    secret = new_token(app.test_client()).get_json()["token"]
    client = app.test_client()
    assert client.delete("/logout", headers=bearer(secret)).status_code == 204
    assert client.get("/me", headers=bearer(secret)).status_code == 401


def test_a_user_holds_at_most_100_tokens(app, signup, sql):
    alice = signup("alice")
    from config import db
    from models import ApiToken

    with app.app_context():
        db.session.add_all(
            ApiToken(user_id=alice.user["id"], name=f"t{i}", token_hash=f"{i:064d}", hint="iam_x")
            for i in range(100)
        )
        db.session.commit()
    response = new_token(app.test_client())
    assert response.status_code == 422
    assert sql("SELECT count(*) FROM api_tokens") == [(100,)]


def test_a_whole_number_written_as_a_float_is_an_integer(app, signup):
    """JSON Schema's "integer" (the OpenAPI document) admits 30.0; so does the API."""
    signup("alice")
    response = new_token(app.test_client(), expires_in_days=30.0)
    assert response.status_code == 201, response.get_json()
