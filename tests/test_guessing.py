"""Guesses sent all at once get no more password checks than the limit allows.

A limit that is checked before the view and counted after the response lets every request
already in flight through. Here N >= 40 wrong guesses arrive together, from threads in this
process and from several processes against gunicorn workers sharing Redis, and at most the
configured number of them may reach the password check (401/403); the rest are 429s.
"""

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import models
import passwords
from conftest import PASSWORD
from services import Client, Gunicorn, check_log, delete_redis_keys, migrate

GUESSES = 40
LIMIT = 5  # RATELIMIT_LOGIN_ACCOUNT's default: 5 per 15 minutes


@pytest.fixture
def slow_checks(monkeypatch):
    """Every password check still runs, 50 ms slower: the window in which a limit counted
    after the response lets concurrent guesses through, made wide enough to see every time."""
    real = passwords.check_password

    def slow(password_hash, password):
        time.sleep(0.05)
        return real(password_hash, password)

    monkeypatch.setattr(passwords, "check_password", slow)  # unknown users' dummy check
    monkeypatch.setattr(models, "check_password", slow)  # User.authenticate()


def all_at_once(send, count=GUESSES):
    barrier = threading.Barrier(count)

    def one(i):
        barrier.wait()
        return send(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def wrong_login(app, path):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.200.0.1"  # one attacker, one address
    body = {"username": "alice", "password": "wrong password"}
    return lambda i: client.post(path, json=body).status_code


@pytest.mark.parametrize("path", ["/login", "/tokens"])
def test_concurrent_wrong_logins_get_at_most_the_limit_of_checks(app, signup, slow_checks, path):
    signup("alice")
    statuses = all_at_once(wrong_login(app, path))
    assert statuses.count(401) <= LIMIT, statuses
    assert statuses.count(401) + statuses.count(429) == GUESSES
    # and the account is locked from that address, the right password included
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.200.0.1"
    assert client.post(path, json={"username": "alice", "password": PASSWORD}).status_code == 429


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("PUT", "/me/password", {"current_password": "wrong", "new_password": "a new passphrase"}),
        ("DELETE", "/me", {"password": "wrong password"}),
        ("PATCH", "/me", {"email": "new@example.com", "current_password": "wrong password"}),
    ],
)
def test_concurrent_wrong_current_passwords_get_at_most_the_limit_of_checks(
    signup, slow_checks, sql, method, path, body
):
    alice = signup("alice")
    statuses = all_at_once(lambda i: alice.open(path, method=method, json=body).status_code)
    assert statuses.count(403) <= LIMIT, statuses
    assert statuses.count(403) + statuses.count(429) == GUESSES
    assert sql("SELECT count(*) FROM users") == [(1,)]


def test_a_guess_refused_by_the_second_limit_counts_against_neither(app, signup):
    """The address limit refuses; the account limit, asked first, must not keep a failure."""
    signup("alice")
    sprayer = app.test_client()
    for i in range(30):  # RATELIMIT_LOGIN_ADDRESS: 30 per minute
        body = {"username": f"user{i}", "password": "wrong password"}
        assert sprayer.post("/login", json=body).status_code == 401
    body = {"username": "alice", "password": PASSWORD}
    assert sprayer.post("/login", json=body).status_code == 429
    # from elsewhere, alice's account has no failures recorded: five wrong, then locked
    other = app.test_client()
    wrong = {"username": "alice", "password": "wrong password"}
    assert [other.post("/login", json=wrong).status_code for _ in range(6)] == [401] * 5 + [429]


# --- the same against gunicorn, several worker processes sharing Redis ---

CLIENT = r"""
import json, sys, threading, urllib.error, urllib.request
url, body, method, cookie, count = sys.argv[1:6]
body, count = body.encode(), int(count)
barrier, statuses = threading.Barrier(count), []
def one():
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = cookie
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    barrier.wait()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            statuses.append(response.status)
    except urllib.error.HTTPError as error:
        statuses.append(error.code)
threads = [threading.Thread(target=one) for _ in range(count)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(statuses))
"""


@pytest.fixture
def gunicorn_with_redis(empty_database, redis_url):
    """Three gunicorn workers (four threads each) sharing one Redis, checks at a real cost."""
    prefix = f"iam-test-{uuid.uuid4().hex[:12]}"
    migrate(empty_database)
    server = Gunicorn(
        empty_database,
        workers=3,
        REDIS_URL=redis_url,
        RATELIMIT_KEY_PREFIX=prefix,
        BCRYPT_LOG_ROUNDS=10,  # tens of milliseconds a check, as in production
    )
    try:
        yield server.start()
    finally:
        output = server.stop()
        delete_redis_keys(redis_url, prefix)
    check_log(output)


def from_processes(url, body, method="POST", cookie="", processes=2):
    per_process = GUESSES // processes + 1
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, url, json.dumps(body), method, cookie, str(per_process)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    statuses = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        statuses += json.loads(out)
    return statuses


def test_concurrent_guesses_from_several_processes_against_gunicorn_and_redis(gunicorn_with_redis):
    server = gunicorn_with_redis
    alice = Client(server.port).signup("alice")
    wrong = {"username": "alice", "password": "wrong password"}

    statuses = from_processes(server.base + "/login", wrong)
    assert len(statuses) >= GUESSES
    assert statuses.count(401) <= LIMIT, statuses
    assert set(statuses) <= {401, 429}

    statuses = from_processes(
        server.base + "/me/password",
        {"current_password": "wrong", "new_password": "another passphrase"},
        method="PUT",
        cookie=f"session={alice.cookie}",
    )
    assert statuses.count(403) <= LIMIT, statuses
    assert set(statuses) <= {403, 429}
    assert alice.get("/check_session").status == 200  # nothing changed


# --- what a 429 tells: nothing about who has an account, and never a 500 ---


def test_a_429_does_the_same_work_for_known_and_unknown_names(app, signup, queries):
    """Before the answer, a locked-out real account costs no more than a name nobody has: the
    owner's "locked_out" history entry is looked up and written after the response."""
    from flask.testing import FlaskClient

    signup("alice")
    work = {}
    for username in ("alice", "nobody"):
        attacker = app.test_client()
        wrong = {"username": username, "password": "wrong password"}
        assert [attacker.post("/login", json=wrong).status_code for _ in range(5)] == [401] * 5
        client = FlaskClient(app, app.response_class, use_cookies=True)  # closed below
        client.environ_base["REMOTE_ADDR"] = attacker.environ_base["REMOTE_ADDR"]
        with queries() as statements:
            response = client.post("/login", json=wrong)
        assert response.status_code == 429
        work[username] = list(statements)
        response.close()  # what the server does once the answer is sent
    assert work["alice"] == work["nobody"] == []


@pytest.mark.parametrize("path", ["/login", "/tokens"])
def test_a_lone_surrogate_in_a_locked_out_name_is_a_422_not_a_500(app, path):
    """The name is validated once, at the edge, before it reaches a key or the database."""
    attacker = app.test_client()
    for _ in range(5):
        body = {"username": "a?@example.com", "password": "wrong password"}
        assert attacker.post(path, json=body).status_code == 401
    raw = '{"username": "a\\ud800@example.com", "password": "wrong password"}'
    response = attacker.post(path, data=raw, content_type="application/json")
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["username"]
    body = {"username": "a?@example.com", "password": "wrong password"}
    assert attacker.post(path, json=body).status_code == 429


def test_a_lockout_without_a_user_agent_is_still_recorded(app, signup):
    alice = signup("alice")
    attacker = app.test_client()
    wrong = {"username": "alice", "password": "wrong password"}
    for _ in range(7):
        attacker.post("/login", json=wrong, headers={"User-Agent": ""})
    events = alice.get("/me/security-events").get_json()
    [locked] = [e for e in events if e["type"] == "locked_out"]
    assert locked["user_agent"] is None and locked["ip"] == attacker.environ_base["REMOTE_ADDR"]


def test_a_dormant_account_with_an_older_cheaper_hash_costs_the_same_as_no_account(
    app, signup, monkeypatch
):
    """Raising BCRYPT_LOG_ROUNDS leaves accounts that have not logged in since with a cheaper
    hash; a failed login still does the bcrypt work of one check at today's cost, 2^rounds."""
    from config import bcrypt

    signup("alice")  # hashed at 4, the suite's cost
    monkeypatch.setitem(app.config, "BCRYPT_LOG_ROUNDS", 7)
    work = []
    real = bcrypt.check_password_hash

    def counting(pw_hash, password):
        work.append(2 ** int(pw_hash.split("$")[2]))  # bcrypt's work doubles with the cost
        return real(pw_hash, password)

    monkeypatch.setattr(bcrypt, "check_password_hash", counting)
    totals = {}
    for username in ("alice", "nobody"):
        work.clear()
        body = {"username": username, "password": "wrong password"}
        assert app.test_client().post("/login", json=body).status_code == 401
        totals[username] = sum(work)
    assert totals["alice"] == totals["nobody"] == 2**7


# --- found in review ---


@pytest.mark.parametrize(
    "variant",
    ["bob@ｅxample.com", "bob@EXAMPLE.ＣＯＭ", "BOB@example.com", "bob@exa\u034fmple.com"],
    ids=["fullwidth-letter", "fullwidth-tld", "upper-case", "ignorable-mark"],
)
def test_another_spelling_of_an_address_gets_no_fresh_budget(app, verified, variant):
    verified("bob")
    attacker = app.test_client()
    wrong = {"username": "bob@example.com", "password": "wrong password"}
    assert [attacker.post("/login", json=wrong).status_code for _ in range(5)] == [401] * 5
    for body in ({**wrong, "username": variant}, {"username": variant, "password": PASSWORD}):
        assert attacker.post("/login", json=body).status_code == 429


def test_attempts_whose_release_was_lost_lapse_even_while_others_keep_trying(app, monkeypatch):
    """A worker killed mid-check never releases its attempt; each attempt lapses at its own
    deadline, however often the key is tried meanwhile."""
    from limits import parse

    from ratelimit import InFlight, counters

    monkeypatch.setattr(InFlight, "SECONDS", 1)
    limit, key = parse("2 per minute"), ("leak-test", str(uuid.uuid4()))
    with app.app_context():
        assert counters.begin_attempt(limit, key) is not None  # never ended: lost
        assert counters.begin_attempt(limit, key) is not None  # lost too
        outcomes = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # someone keeps trying, and ends each attempt
            end = counters.begin_attempt(limit, key)
            outcomes.append(end is not None)
            if end is not None:
                end(False)
            time.sleep(0.1)
    assert outcomes[0] is False  # refused while the lost ones were in progress...
    assert outcomes[-1] is True  # ...admitted once they lapsed, whatever the tries meanwhile


def test_concurrent_sign_ups_cannot_pass_the_sign_up_limit(app, monkeypatch, sql):
    real = models.hash_password

    def slow(password):  # the cost of production's bcrypt, so requests overlap
        time.sleep(0.05)
        return real(password)

    monkeypatch.setattr(models, "hash_password", slow)

    def sign_up(i):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = "10.201.0.1"
        body = {"username": f"user{i}", "password": PASSWORD}
        return client.post("/signup", json=body).status_code

    statuses = all_at_once(sign_up)
    assert statuses.count(201) <= 10, statuses  # RATELIMIT_SIGNUP: 10 per hour
    assert set(statuses) <= {201, 429}
    assert sql("SELECT count(*) FROM users") == [(statuses.count(201),)]


def test_a_hash_made_at_a_higher_cost_is_made_anew_at_todays(app, signup, sql, monkeypatch):
    """Lowering BCRYPT_LOG_ROUNDS: an older, costlier hash would answer slower than a name
    nobody has; the owner's next login makes it at today's cost."""
    monkeypatch.setitem(app.config, "BCRYPT_LOG_ROUNDS", 5)
    signup("alice")
    monkeypatch.setitem(app.config, "BCRYPT_LOG_ROUNDS", 4)
    body = {"username": "alice", "password": PASSWORD}
    assert app.test_client().post("/login", json=body).status_code == 200
    assert sql("SELECT password_hash FROM users")[0][0].startswith("$2b$04$")
