"""Throttling that stops guessing without letting an attacker lock anyone else out."""

import uuid
from datetime import timedelta

import pytest
import time_machine

from apprunner import run_app
from conftest import PASSWORD, cookie_of, login, replay
from services import delete_redis_keys

TOO_MANY = {"error": "Too many requests. Try again later."}


def assert_429(response, max_wait):
    assert response.status_code == 429
    assert response.get_json() == TOO_MANY
    assert response.mimetype == "application/json"
    assert 1 <= int(response.headers["Retry-After"]) <= max_wait + 2


def test_five_failures_lock_that_account_from_that_address_even_for_the_right_password(signup, app):
    signup("alice")
    attacker = app.test_client()
    for _ in range(5):
        assert login(attacker, password="wrong password").status_code == 401
    assert_429(login(attacker, password="wrong password"), max_wait=15 * 60)
    assert_429(login(attacker), max_wait=15 * 60)  # even the right password


def test_unknown_usernames_are_throttled_identically(signup, app):
    signup("alice")
    known, unknown = app.test_client(), app.test_client()
    statuses = {"known": [], "unknown": []}
    for _ in range(7):
        statuses["known"].append(login(known, password="wrong password").status_code)
        statuses["unknown"].append(login(unknown, username="nobody").status_code)
    assert statuses["known"] == statuses["unknown"] == [401] * 5 + [429] * 2


def test_the_owner_elsewhere_is_not_locked_out(signup, app):
    signup("alice")
    attacker, owner = app.test_client(), app.test_client()
    for _ in range(6):
        login(attacker, password="wrong password")
    assert login(owner).status_code == 200
    assert login(attacker, username="bobby", password="wrong password").status_code == 401


def test_successful_logins_do_not_count(signup, app):
    signup("alice")
    client = app.test_client()
    assert [login(client).status_code for _ in range(12)] == [200] * 12


def test_the_lock_lifts_when_the_window_passes(signup, app):
    signup("alice")
    attacker = app.test_client()
    with time_machine.travel(timedelta(0), tick=False) as clock:
        for _ in range(5):
            login(attacker, password="wrong password")
        clock.shift(timedelta(minutes=14))
        refused = login(attacker)
        assert refused.status_code == 429
        wait = int(refused.headers["Retry-After"])
        assert 60 <= wait <= 62  # what is left of the 15 minutes, rounded up, plus a second
        clock.shift(timedelta(seconds=wait - 2))
        assert login(attacker).status_code == 429  # not early
        clock.shift(timedelta(seconds=2))
        assert login(attacker).status_code == 200  # waiting Retry-After was enough


def test_one_address_spraying_many_accounts_is_limited(signup, app):
    signup("alice")
    sprayer = app.test_client()
    for i in range(30):
        assert login(sprayer, username=f"user{i}", password="password1").status_code == 401
    assert_429(login(sprayer, username="alice"), max_wait=60)
    assert login(app.test_client()).status_code == 200  # others are unaffected


def test_forwarded_for_is_ignored_without_a_trusted_proxy(signup, app):
    signup("alice")
    attacker = app.test_client()
    statuses = [
        login(attacker, password="wrong", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
        for i in range(8)
    ]
    assert statuses == [401] * 5 + [429] * 3


def test_signup_is_limited_per_address(app, sql):
    client = app.test_client()
    statuses = [
        client.post("/signup", json={"username": f"user{i}", "password": PASSWORD}).status_code
        for i in range(11)
    ]
    assert statuses == [201] * 10 + [429]
    assert sql("SELECT count(*) FROM users") == [(10,)]
    other = app.test_client().post("/signup", json={"username": "other", "password": PASSWORD})
    assert other.status_code == 201


def test_rejected_signups_do_not_use_up_the_signup_limit(app, sql):
    """A developer's typos (422s) do not lock them out of signing up for an hour."""
    client = app.test_client()
    for i in range(25):  # weak passwords, bad names, taken names: all refused
        body = {"username": f"u{i}!" if i % 2 else "x", "password": "short"}
        assert client.post("/signup", json=body).status_code == 422
    statuses = [
        client.post("/signup", json={"username": f"user{i}", "password": PASSWORD}).status_code
        for i in range(11)
    ]
    assert statuses == [201] * 10 + [429]  # still ten accounts an hour from one address
    assert sql("SELECT count(*) FROM users") == [(10,)]


def test_rejected_signups_fall_under_the_default_limit(app):
    client = app.test_client()
    body = {"username": "x", "password": "short"}
    statuses = [client.post("/signup", json=body).status_code for _ in range(301)]
    assert statuses == [422] * 300 + [429]


def test_default_limit_applies_per_user_and_route(signup, app):
    alice = signup("alice")
    statuses = [alice.get("/check_session").status_code for _ in range(300)]
    assert statuses == [200] * 300
    assert_429(alice.get("/check_session"), max_wait=60)
    same_user_elsewhere = replay(app, cookie_of(alice))
    assert same_user_elsewhere.get("/check_session").status_code == 429  # the user's counter
    assert alice.get("/posts").status_code == 200  # each route has its own
    assert app.test_client().get("/check_session").status_code == 401  # others are not limited


def test_retry_after_is_only_on_429(signup):
    alice = signup("alice")
    assert "Retry-After" not in alice.get("/check_session").headers
    assert "X-RateLimit-Limit" not in alice.get("/check_session").headers


# --- settings read at import: a child process with its own environment ---


def failed_logins(count, addr="10.0.0.1", forwarded=None, username="alice"):
    steps = []
    for i in range(count):
        headers = {"X-Forwarded-For": forwarded(i)} if forwarded else {}
        steps.append(
            {
                "method": "POST",
                "path": "/login",
                "addr": addr,
                "headers": headers,
                "json": {"username": username, "password": "wrong password"},
            }
        )
    return steps


SIGNUP = {
    "method": "POST",
    "path": "/signup",
    "addr": "10.9.9.9",
    "json": {"username": "alice", "password": PASSWORD},
}


def test_a_trusted_proxy_count_uses_the_proxys_address_and_not_the_clients_claim(tmp_path):
    # The client claims a new address each time; the proxy appends the real one last.
    steps = [
        SIGNUP,
        *failed_logins(7, addr="10.0.0.2", forwarded=lambda i: f"198.51.100.{i}, 9.9.9.9"),
    ]
    steps += failed_logins(1, addr="10.0.0.2", forwarded=lambda i: "8.8.8.8")
    results, _ = run_app(steps, {"TRUSTED_PROXY_COUNT": "1"}, tmp_path)
    statuses = [r["status"] for r in results]
    assert statuses == [201] + [401] * 5 + [429] * 2 + [401]


def test_limits_come_from_the_environment(tmp_path):
    env = {"RATELIMIT_LOGIN_ACCOUNT": "2 per minute", "RATELIMIT_SIGNUP": "1 per hour"}
    steps = [
        SIGNUP,
        *failed_logins(3),
        {**SIGNUP, "json": {"username": "bob", "password": PASSWORD}},
    ]
    results, _ = run_app(steps, env, tmp_path)
    assert [r["status"] for r in results] == [201, 401, 401, 429, 429]
    assert int(results[3]["headers"]["Retry-After"]) <= 62  # a minute, rounded up, plus a second


def test_ratelimit_enabled_false_turns_throttling_off(tmp_path):
    results, _ = run_app([SIGNUP, *failed_logins(8)], {"RATELIMIT_ENABLED": "false"}, tmp_path)
    assert [r["status"] for r in results] == [201] + [401] * 8


def test_redis_down_falls_back_to_per_process_limits(tmp_path):
    env = {"REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    steps = [SIGNUP, *failed_logins(6), {"method": "GET", "path": "/check_session"}]
    results, log = run_app(steps, env, tmp_path)
    assert [r["status"] for r in results] == [201] + [401] * 5 + [429, 200]
    assert all(r["headers"]["Content-Type"] == "application/json" for r in results)
    assert "falling back to in-memory storage" in log


def test_limits_are_shared_through_redis_by_every_process(tmp_path, redis_url):
    """Two app processes, one Redis: failures in one count in the other."""
    import redis

    prefix = f"iam-test-{uuid.uuid4().hex[:12]}"
    env = {"REDIS_URL": redis_url, "RATELIMIT_KEY_PREFIX": prefix}
    try:
        first, _ = run_app([SIGNUP, *failed_logins(3)], env, tmp_path)
        second, _ = run_app([SIGNUP, *failed_logins(3)], env, tmp_path)
        assert [r["status"] for r in first] == [201, 401, 401, 401]
        assert [r["status"] for r in second] == [201, 401, 401, 429]
        assert list(redis.Redis.from_url(redis_url).scan_iter(prefix + "*"))
    finally:
        delete_redis_keys(redis_url, prefix)


@pytest.mark.parametrize("body", ["[1]", '{"username": ' + "[" * 3000 + "]" * 3000 + "}", "x"])
def test_odd_login_bodies_never_break_the_throttle(app, body):
    response = app.test_client().post("/login", data=body, content_type="application/json")
    assert response.status_code == 400
