"""Faults under load, on real servers (README, Deploy, 7): a worker killed mid-request loses
nothing acknowledged; with PostgreSQL down every request is a quick JSON 503 and the API recovers
by itself; with Redis down logins go on, on per-process limits.

PostgreSQL is a private cluster (initdb) that these tests stop and start; the shared servers are
never touched. Run with -s to see the numbers.
"""

import http.client
import os
import signal
import statistics
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest

from services import (
    DATABASE_TIMEOUT,
    Client,
    Gunicorn,
    Response,
    call,
    check_log,
    migrate,
    postgres_server,
    redis_server,
    wait_for,
)

# Longer than MAIL_POLL_SECONDS (5): every worker's mail sender meets the outage too.
OUTAGE = 5.5
UNAVAILABLE = {"error": "Service temporarily unavailable. Try again shortly."}
# Throttles that a burst from one address would otherwise trip; the per-account login limit is
# what the Redis test checks, so it stays small.
LOOSE_LIMITS = {
    "RATELIMIT_DEFAULT": "100000 per minute",
    "RATELIMIT_SIGNUP": "1000 per hour",
    "RATELIMIT_LOGIN_ADDRESS": "1000 per minute",
    "RATELIMIT_LOGIN_ACCOUNT": "3 per minute",
}


@pytest.fixture(scope="module")
def postgres():
    """The private cluster, with a migrated template database (`migrated`) to copy."""
    with postgres_server() as server:
        migrate(server.create_database("migrated"))
        yield server


@pytest.fixture
def private_database(postgres):
    """A fresh migrated database on the private cluster, which is up again afterwards. (Not
    named `database`: that is conftest's session fixture, which cleans up after the run.)"""
    name = f"iam_{uuid.uuid4().hex[:12]}"
    yield postgres.create_database(name, template="migrated")
    postgres.thaw()  # in case the test failed while the server was down
    if not postgres.running:
        postgres.start()
    postgres.drop_database(name)


@pytest.fixture
def start_server():
    """start_server(database_url, **settings) -> a started Gunicorn, stopped after the test."""
    started = []

    def start(database_url, workers=2, **settings):
        server = Gunicorn(database_url, workers=workers, **{**LOOSE_LIMITS, **settings})
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def rows(database_url):
    """Every post as stored: {content: (id, user_id, author's username or None)}."""
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        found = conn.execute(
            "SELECT p.id, p.content, p.user_id, u.username, p.created_at, p.updated_at "
            "FROM posts p LEFT JOIN users u ON u.id = p.user_id"
        ).fetchall()
    for row in found:
        assert None not in row, f"half-written post: {row}"  # every field, and its author
    contents = [row[1] for row in found]
    assert len(set(contents)) == len(contents), "a post was stored twice"
    return {row[1]: (row[0], row[2], row[3]) for row in found}


@dataclass
class Outcome:
    content: str
    username: str
    started: float
    elapsed: float
    status: int | None = None  # None: no response (the connection broke)
    content_type: str = ""
    body: object = None
    error: str = ""  # the client-side exception, or "bad json"


class Burst:
    """Logged-in client threads posting unique contents back to back, recording every outcome."""

    def __init__(self, port, clients, timeout=DATABASE_TIMEOUT + 10):
        self.port, self.clients, self.timeout = port, clients, timeout
        self.outcomes = []  # list.append is atomic
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(name, client), daemon=True)
            for name, client in clients.items()
        ]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _run(self, username, client):
        while not self._stop.is_set():
            if self.post(username, client).status != 201:
                time.sleep(0.05)  # as a client would pause before trying again

    def post(self, username, client):
        content = f"{username} {uuid.uuid4().hex}"
        started = time.monotonic()
        outcome = Outcome(content, username, started, 0.0)
        try:
            response = client.post("/posts", {"content": content}, timeout=self.timeout)
            outcome.status, outcome.content_type = response.status, response.content_type
            try:
                outcome.body = response.json()
            except ValueError:
                outcome.error = "bad json"
        except (OSError, http.client.HTTPException) as error:
            outcome.error = type(error).__name__
        except Exception as error:  # a thread must not die silently
            outcome.error = f"unexpected {type(error).__name__}: {error}"
        outcome.elapsed = time.monotonic() - started
        self.outcomes.append(outcome)
        return outcome

    def acknowledged(self, since=0.0):
        return [o for o in self.outcomes if o.status == 201 and o.started >= since]

    def summary(self):
        kinds = {}
        for o in self.outcomes:
            kind = o.error or str(o.status)
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds


def sign_up(port, count, prefix):
    return {f"{prefix}{n}": Client(port).signup(f"{prefix}{n}") for n in range(count)}


def check_acknowledged_posts_are_stored(burst, stored):
    """Every 201 the client saw is in the database as acknowledged; every other stored post is
    one whose request failed without an answer the client could trust (its commit happened,
    its 201 was lost). Returns those."""
    acknowledged = burst.acknowledged()
    for o in acknowledged:
        assert o.content in stored, f"acknowledged post {o.body['id']} is not in the database"
        post_id, user_id, username = stored[o.content]
        assert (post_id, user_id, username) == (o.body["id"], o.body["user"]["id"], o.username)
    failed = {o.content for o in burst.outcomes if o.status != 201}
    unacknowledged = set(stored) - {o.content for o in acknowledged}
    assert unacknowledged <= failed, "a post nobody asked for (or asked for twice) was stored"
    return acknowledged, unacknowledged


# --- a worker killed mid-burst ---


def test_killing_a_worker_mid_burst_loses_no_acknowledged_post(private_database, start_server):
    server = start_server(private_database, workers=2)
    clients = sign_up(server.port, 6, "killed")
    with Burst(server.port, clients) as burst:
        wait_for(lambda: len(burst.acknowledged()) >= 60, 30, what="posts before the kill")
        victim = server.worker_pids()[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)

        def replacement():
            pids = server.worker_pids()
            return pids if victim not in pids and len(pids) == 2 else None

        replaced = wait_for(replacement, 30, what="gunicorn to fork a replacement worker")
        replaced_after = time.monotonic() - killed_at
        wait_for(
            lambda: len(burst.acknowledged(since=killed_at + replaced_after)) >= 30,
            30,
            what="posts after the kill",
        )
    log = server.stop()
    stored = rows(private_database)
    acknowledged, unacknowledged = check_acknowledged_posts_are_stored(burst, stored)

    print(
        f"\nworker kill: {len(burst.outcomes)} requests, {len(acknowledged)} acknowledged, "
        f"{len(stored)} rows ({len(unacknowledged)} committed without a 201 reaching the client), "
        f"outcomes {burst.summary()}; replacement worker forked after {replaced_after:.2f} s "
        f"(workers {replaced})"
    )
    for o in burst.outcomes:
        if o.status is not None:  # every answer is JSON, and only a 201 or a JSON 5xx
            assert o.content_type == "application/json" and not o.error, o
            assert o.status == 201 or (o.status >= 500 and "error" in o.body), o
        else:  # a request the killed worker had: its connection broke
            assert o.error in {
                "RemoteDisconnected", "ConnectionResetError", "BrokenPipeError",
                "IncompleteRead",
            }, o  # fmt: skip
    # the kill cost at most the killed worker's share of requests (4 threads, plus accepted
    # connections it had queued), and the service went on
    assert sum(1 for o in burst.outcomes if o.status != 201) <= 12, burst.summary()
    assert f"Worker (pid:{victim}) was sent SIGKILL!" in log
    check_log(log)


# --- PostgreSQL stopped mid-burst ---


@pytest.mark.parametrize("mode", ["fast", "immediate", "frozen"])
def test_database_outage_gives_quick_json_503s_and_the_api_recovers(
    postgres, private_database, start_server, mode
):
    """In the middle of a burst of posts, for OUTAGE seconds: pg_ctl stop -m fast (a clean
    shutdown that disconnects everyone), -m immediate (a crash: the next start replays the WAL),
    or every server process frozen with SIGSTOP (connections accepted and data acknowledged by
    the kernel, never answered: `docker pause`, a server stuck in I/O; for longer, so that a
    request hanging on it would show)."""
    # A refused connection fails at once; a frozen server makes a request wait out a pooled
    # connection's check and then a new connection, each up to DATABASE_TIMEOUT (+ 0.5 s).
    bound = DATABASE_TIMEOUT + 3 if mode != "frozen" else 2 * (DATABASE_TIMEOUT + 0.5) + 1
    outage = OUTAGE if mode != "frozen" else bound + 2  # so that a hanging request shows
    server = start_server(private_database, workers=2)
    clients = sign_up(server.port, 4, f"outage{mode}")
    probe = Client(server.port).signup(f"probe{mode}")
    readiness = []
    with Burst(server.port, clients) as burst:
        wait_for(lambda: len(burst.acknowledged()) >= 30, 30, what="posts before the outage")
        stopping = time.monotonic()
        postgres.freeze() if mode == "frozen" else postgres.stop(mode)
        down = time.monotonic()
        while time.monotonic() < down + outage:
            try:
                readiness.append(call(server.port, "GET", "/readyz", timeout=bound + 5))
            except OSError as error:  # it did not answer at all
                readiness.append(error)
            time.sleep(0.25)
        starting = time.monotonic()
        postgres.thaw() if mode == "frozen" else postgres.start()
        up = time.monotonic()

        # Recovery, without touching gunicorn: a post and a session check both succeed.
        def recovered():
            posted = burst.post(f"probe{mode}", probe)
            checked = probe.get("/check_session", timeout=DATABASE_TIMEOUT + 10)
            return posted.status == 201 and checked.status == 200

        wait_for(recovered, 15, interval=0.1, what="the API to recover")
        recovery = time.monotonic() - up
        wait_for(lambda: len(burst.acknowledged(since=up)) >= 20, 30, what="posts after")
    ready_after = call(server.port, "GET", "/readyz")
    log = server.stop()
    stored = rows(private_database)
    acknowledged, unacknowledged = check_acknowledged_posts_are_stored(burst, stored)

    during = [o for o in burst.outcomes if o.started >= down and o.started + o.elapsed < starting]
    latencies = sorted(o.elapsed for o in during)
    print(
        f"\nPostgreSQL {mode}: {len(burst.outcomes)} requests, {len(acknowledged)} "
        f"acknowledged, {len(stored)} rows ({len(unacknowledged)} committed whose 201 was lost), "
        f"outcomes {burst.summary()}; stopping took {down - stopping:.2f} s, starting "
        f"{up - starting:.2f} s; {len(during)} requests while down: 503 latency median "
        f"{statistics.median(latencies) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms; "
        f"recovered {recovery:.2f} s after the start"
    )
    # Every request got an answer, in time, as JSON: a 201 or the house 503, never HTML.
    for o in burst.outcomes:
        assert not o.error, o
        assert o.content_type == "application/json", o
        assert (o.status, o.status == 201 or o.body) in [(201, True), (503, UNAVAILABLE)], o
        assert o.elapsed < bound, o
    # While the server was down, everything was a 503 (and there were plenty of requests).
    # (a frozen server makes each request wait, so there are fewer of them)
    assert len(during) >= (20 if mode != "frozen" else 2), len(during)
    assert {o.status for o in during} == {503}
    hung = [
        o
        for o in burst.outcomes
        if down <= o.started < starting - bound and o.started + o.elapsed >= starting
    ]
    assert not hung, f"requests still waiting when the database came back: {hung}"
    assert readiness and all(
        isinstance(r, Response)
        and r.status == 503
        and r.content_type == "application/json"
        and r.json()["checks"]["database"] == "unreachable"
        for r in readiness
    ), [getattr(r, "body", r) for r in readiness]
    assert max(r.elapsed for r in readiness) < bound
    assert ready_after.status == 200 and ready_after.json()["status"] == "ready"
    assert recovery < 10
    # A post stored without its 201 is one whose COMMIT reached the server as it went down (or
    # froze, to be read when it thawed) while the answer was lost: at most one per request in
    # flight at that moment, one per client thread. Nothing else may differ.
    assert len(unacknowledged) <= len(clients)
    check_log(log)


# --- Redis stopped or frozen ---


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_logins_go_on_without_redis_on_per_process_limits(private_database, start_server, fault):
    """Redis down (connections refused) or frozen (SIGSTOP: connections hang until the 0.5 s
    socket timeouts): logins keep working, a wrong password is still a 401, and the per-account
    limit still holds in the worker's memory; /readyz names Redis; all within a bound."""
    with redis_server() as redis:
        # One worker, so the in-memory fallback limit is one counter.
        server = start_server(private_database, workers=1, REDIS_URL=redis.url)
        Client(server.port).signup("erin")
        assert call(server.port, "GET", "/readyz").json()["checks"]["redis"] == "ok"

        redis.stop() if fault == "stopped" else redis.freeze()
        timed = []

        def timed_call(response):
            timed.append(response.elapsed)
            return response

        for _ in range(3):
            assert timed_call(Client(server.port).login("erin")).status == 200
        wrong = timed_call(Client(server.port).login("erin", "not erin's password"))
        assert wrong.status == 401
        assert wrong.json() == {"error": "Invalid username or password."}
        for _ in range(3):  # the fallback counts failures per account, in this worker
            assert timed_call(Client(server.port).login("nobody", "guess guess")).status == 401
        throttled = timed_call(Client(server.port).login("nobody", "guess guess"))
        assert throttled.status == 429 and int(throttled.headers["retry-after"]) >= 1
        ready = timed_call(call(server.port, "GET", "/readyz", timeout=10))
        assert ready.status == 503
        assert ready.json() == {
            "error": "Not ready: redis unreachable.",
            "checks": {"database": "ok", "redis": "unreachable"},
        }
        print(
            f"\nRedis {fault}: login/readyz latencies (ms) "
            f"{[round(t * 1000) for t in timed]}, max {max(timed) * 1000:.0f} ms"
        )
        assert max(timed) < 2.5, timed  # 0.5 s socket timeouts, then the fallback

        redis.start() if fault == "stopped" else redis.thaw()
        wait_for(
            lambda: call(server.port, "GET", "/readyz").status == 200,
            10,
            what="readiness after Redis returned",
        )
        assert Client(server.port).login("erin").status == 200
        check_log(server.stop())


def test_rate_limits_count_in_memory_while_redis_is_down_then_in_redis_again(caplog):
    """ratelimit.Counters: refused connections switch it to this process's memory (one
    warning), and once Redis answers again the counts go back there."""
    import redis as redis_client
    from limits import parse
    from limits.storage import storage_from_string

    from ratelimit import Counters, make_in_flight

    limit, key = parse("2 per minute"), ("test", "k")
    with redis_server() as redis:
        storage = storage_from_string(
            redis.url, key_prefix="fallback-test", socket_connect_timeout=0.5, socket_timeout=0.5
        )
        counters = Counters(storage, make_in_flight(storage))
        counters.RETRY_SECONDS = 0.2
        assert counters.hit(limit, key)
        redis.stop()
        assert [counters.hit(limit, key) for _ in range(3)] == [True, True, False]  # memory
        assert caplog.text.count("falling back to in-memory storage") == 1
        redis.start()
        time.sleep(0.3)
        assert [counters.hit(limit, key) for _ in range(3)] == [True, True, False]  # Redis, anew
        assert "rate-limit storage reachable again" in caplog.text
        client = redis_client.Redis.from_url(redis.url)
        assert list(client.scan_iter("fallback-test*"))
        client.close()  # both connections, so no socket is left for the garbage collector
        storage.get_connection().close()
