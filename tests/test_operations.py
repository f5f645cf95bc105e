"""What operators rely on: request ids, health and readiness, purging expired rows."""

import json
import os
import re
import subprocess
import sys
from datetime import timedelta

import time_machine

from apprunner import run_app
from conftest import PASSWORD, ROOT


def test_every_response_carries_a_fresh_request_id(signup, client):
    alice = signup("alice")
    responses = [
        alice.get("/check_session"),
        client.get("/check_session"),
        client.get("/nope"),
        client.post("/login", data="x", content_type="text/plain"),
        client.options("/posts"),
    ]
    ids = [r.headers["X-Request-ID"] for r in responses]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_client_cannot_choose_its_request_id_without_a_trusted_proxy(client):
    response = client.get("/healthz", headers={"X-Request-ID": "forged-id"})
    assert response.headers["X-Request-ID"] != "forged-id"


def test_a_trusted_proxys_request_id_is_kept(tmp_path):
    steps = [
        {"path": "/healthz", "headers": {"X-Request-ID": "edge-1234"}},
        {"path": "/healthz", "headers": {"X-Request-ID": "bad id with spaces"}},
    ]
    results, _ = run_app(steps, {"TRUSTED_PROXY_COUNT": "1"}, tmp_path)
    assert results[0]["headers"]["X-Request-ID"] == "edge-1234"
    assert re.fullmatch(r"[0-9a-f]{32}", results[1]["headers"]["X-Request-ID"])


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["status"] == "ready"
    assert ready.get_json()["checks"]["database"] == "ok"
    assert client.head("/healthz").status_code == 200


def test_health_checks_are_not_throttled(client):
    assert {client.get("/healthz").status_code for _ in range(320)} == {200}


def test_readiness_names_an_unreachable_redis(tmp_path):
    results, _ = run_app(
        [{"path": "/readyz"}, {"path": "/healthz"}],
        {"REDIS_URL": "redis://127.0.0.1:1/0"},
        tmp_path,
    )
    assert results[0]["status"] == 503
    assert results[0]["body"] == {
        "error": "Not ready: redis unreachable.",
        "checks": {"database": "ok", "redis": "unreachable"},
    }
    assert results[1]["status"] == 200


def test_readiness_and_requests_answer_503_quickly_when_the_database_is_down():
    code = """
import json, sys, time
sys.path.insert(0, "server")
from app import app
client = app.test_client()
client.set_cookie("session", "a" * 43)  # so the session lookup needs the database
out = []
for path in ("/readyz", "/healthz", "/posts"):
    started = time.monotonic()
    response = client.get(path)
    out.append([response.status_code, response.get_json(), round(time.monotonic() - started, 2)])
print(json.dumps(out))
"""
    env = {
        **os.environ,
        "APP_ENV": "testing",
        "DATABASE_TIMEOUT": "2",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing",
        "REDIS_URL": "",  # only the database is down here
    }  # nothing listens on 1
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    ready, health, posts = json.loads(done.stdout.strip().splitlines()[-1])
    assert ready[:2] == [
        503,
        {"error": "Not ready: database unreachable.", "checks": {"database": "unreachable"}},
    ]
    assert health[:2] == [200, {"status": "ok"}]
    assert posts[:2] == [503, {"error": "Service temporarily unavailable. Try again shortly."}]
    # (each request carried a session cookie: the probes answered without looking it up)
    assert max(ready[2], health[2], posts[2]) < 5
    # the failed session lookup went through the error handler: one log line, no traceback
    assert "Traceback" not in done.stderr, done.stderr
    assert "database unavailable: OperationalError" in done.stderr, done.stderr


def test_purge_deletes_only_what_has_expired(app, signup, sql):
    alice = signup("alice")
    with time_machine.travel(timedelta(0), tick=False) as clock:
        old = app.test_client()
        old.post("/login", json={"username": "alice", "password": PASSWORD})
        old.post("/tokens", json={"username": "alice", "password": PASSWORD, "expires_in_days": 1})
        old.post("/tokens", json={"username": "alice", "password": PASSWORD})
        app.test_client().post("/password-reset", json={"email": "nobody@example.com"})
        clock.shift(timedelta(days=2))
        alice.post("/login", json={"username": "alice", "password": PASSWORD})  # fresh session
        result = app.test_cli_runner().invoke(args=["sessions", "purge"])
    assert result.exit_code == 0, result.output
    assert (
        result.output
        == "1 expired sessions, 1 expired API tokens, 0 expired link tokens, 0 expired pending "
        "logins, 0 expired passkey challenges deleted.\n"
    )
    assert sql("SELECT count(*) FROM sessions") == [(1,)]
    assert sql("SELECT count(*) FROM api_tokens") == [(1,)]
    assert alice.get("/check_session").status_code == 200
