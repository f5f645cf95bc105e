"""Two gunicorn instances sharing one PostgreSQL and one Redis behave as one API (README, Deploy):
a session made through either is valid on both, a logout through either ends it on both, and
login throttling counts across both."""

import pytest

from services import (
    Client,
    Gunicorn,
    check_log,
    migrate,
    postgres_server,
    redis_server,
)

LOGIN_LIMIT = 3  # RATELIMIT_LOGIN_ACCOUNT for these servers: "3 per minute"


@pytest.fixture(scope="module")
def instances():
    """(A, B): two gunicorns, each with two workers, on one private PostgreSQL and one Redis."""
    with postgres_server() as postgres, redis_server() as redis:
        database = postgres.create_database()
        migrate(database)
        settings = {
            "REDIS_URL": redis.url,
            "RATELIMIT_LOGIN_ACCOUNT": f"{LOGIN_LIMIT} per minute",
        }
        servers = [Gunicorn(database, workers=2, **settings) for _ in range(2)]
        try:
            for server in servers:
                server.start()
            yield servers
        finally:
            logs = [server.stop() for server in servers]
        for log in logs:
            check_log(log)


def test_a_session_made_on_one_instance_is_valid_on_the_other(instances):
    a, b = instances
    alice = Client(a.port).signup("alice")  # a session created through A
    assert alice.get("/check_session").status == 200
    on_b = alice.on(b).get("/check_session")
    assert on_b.status == 200, on_b.body
    assert on_b.json()["username"] == "alice"

    laptop = Client(b.port)  # and a login through B is valid on A
    assert laptop.login("alice").status == 200
    on_a = laptop.on(a).get("/check_session")
    assert on_a.status == 200 and on_a.json()["username"] == "alice"


def test_a_logout_on_one_instance_ends_the_session_on_the_other(instances):
    a, b = instances
    bob = Client(a.port).signup("bob")
    phone = Client(a.port)
    assert phone.login("bob").status == 200
    cookie = bob.cookie
    assert bob.on(b).get("/check_session").status == 200

    logout = Client(b.port, cookie).delete("/logout")  # through B
    assert logout.status == 204, logout.body
    after = Client(a.port, cookie).get("/check_session")  # the same cookie, on A
    assert after.status == 401 and after.json() == {"error": "Authentication required."}
    assert Client(b.port, cookie).get("/check_session").status == 401
    # only that session ended: bob's other one still works on both
    assert phone.get("/check_session").status == 200
    assert phone.on(b).get("/check_session").status == 200


def test_failed_logins_are_counted_across_instances(instances):
    a, b = instances
    Client(a.port).signup("carol")
    attempts = {a.port: 0, b.port: 0}
    for n in range(LOGIN_LIMIT):  # alternating: A, B, A
        server = (a, b)[n % 2]
        response = Client(server.port).login("carol", "not carol's password")
        assert response.status == 401, (n, response.status, response.body)
        attempts[server.port] += 1
    # Neither instance saw LOGIN_LIMIT failures: on its own, each would still let carol try.
    assert all(count < LOGIN_LIMIT for count in attempts.values()), attempts
    assert sum(attempts.values()) == LOGIN_LIMIT

    for server in (a, b):  # the next attempt on either is refused, even with the right password
        for password in ("still not carol's", "correct horse battery"):
            response = Client(server.port).login("carol", password)
            assert response.status == 429, (server.port, response.status, response.body)
            assert response.content_type == "application/json"
            assert response.json() == {"error": "Too many requests. Try again later."}
            assert 1 <= int(response.headers["retry-after"]) <= 61
    # The limit is per account: another user logging in from the same address is not held up.
    Client(b.port).signup("dave")
    assert Client(a.port).login("dave").status == 200
