"""Server-side sessions: revocable, rotated at login, bounded in time, cheap to read."""

import hashlib
from datetime import timedelta

import pytest
import time_machine

from conftest import PASSWORD, cookie_of, login, replay


def test_cookie_is_a_random_key_stored_only_as_its_hash(signup, sql):
    alice = signup("alice")
    key = cookie_of(alice)

    assert len(key) >= 43  # 32 random bytes, base64url
    [(stored,)] = sql("SELECT key_hash FROM sessions")
    assert stored == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(sql("SELECT * FROM sessions"))


def test_a_cookie_copied_before_logout_is_worthless_after_it(app, signup, sql):
    alice = signup("alice")
    stolen = cookie_of(alice)
    assert replay(app, stolen).get("/check_session").status_code == 200

    assert alice.delete("/logout").status_code == 204

    response = replay(app, stolen).get("/check_session")
    assert response.status_code == 401
    assert response.get_json() == {"error": "Authentication required."}
    assert sql("SELECT count(*) FROM sessions") == [(0,)]


def test_logout_ends_only_that_session(app, signup, client):
    alice = signup("alice")
    login(client)
    alice.delete("/logout")
    assert client.get("/check_session").status_code == 200


def test_login_issues_a_new_session_id(app, signup, sql):
    alice = signup("alice")
    before = cookie_of(alice)

    assert login(alice).status_code == 200
    after = cookie_of(alice)

    assert after != before
    assert replay(app, before).get("/check_session").status_code == 401  # the old id is dead
    assert replay(app, after).get("/check_session").status_code == 200
    assert sql("SELECT count(*) FROM sessions") == [(1,)]


def test_login_as_another_user_leaves_nothing_of_the_first(signup, client):
    signup("alice")
    signup("bobby")
    login(client)
    client.post("/login", json={"username": "bobby", "password": PASSWORD})
    assert client.get("/check_session").get_json()["username"] == "bobby"


def test_anonymous_requests_and_failed_logins_write_no_sessions(client, signup, sql):
    signup("alice")
    sql_before = sql("SELECT count(*) FROM sessions")
    client.get("/check_session")
    client.get("/posts")
    client.get("/nope")
    response = client.post("/login", json={"username": "alice", "password": "wrong password"})

    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers
    assert sql("SELECT count(*) FROM sessions") == sql_before


@pytest.mark.parametrize(
    "value",
    ["garbage", "", "x" * 43, "a" * 3000, "' OR 1=1 --"],
)
def test_made_up_cookies_are_401_and_cleared(app, signup, value):
    signup("alice")
    response = replay(app, value).get("/check_session")
    assert response.status_code == 401
    if value:
        assert "session=;" in response.headers["Set-Cookie"]


def test_tampered_cookie_is_401(app, signup):
    key = cookie_of(signup("alice"))
    tampered = key[:-2] + ("AA" if key[-2:] != "AA" else "BB")
    assert replay(app, tampered).get("/check_session").status_code == 401


def test_session_cookie_is_not_read_from_the_query_string(app, signup):
    key = cookie_of(signup("alice"))
    assert app.test_client().get(f"/check_session?session={key}").status_code == 401


def test_cookie_attributes_without_remember(signup):
    alice = signup("alice")
    response = login(alice)
    header = response.headers["Set-Cookie"]

    assert "HttpOnly" in header and "Path=/" in header and "SameSite=Lax" in header
    assert "Expires" not in header and "Max-Age" not in header  # ends with the browser
    assert "Domain" not in header


def test_remember_makes_the_cookie_persistent(signup, app):
    alice = signup("alice")
    header = login(alice, remember=True).headers["Set-Cookie"]
    assert "Expires=" in header
    lifetime = app.config["SESSION_REMEMBER_LIFETIME"]
    assert lifetime == timedelta(days=30)


def test_idle_session_expires(signup, app):
    alice = signup("alice")
    idle = app.config["SESSION_IDLE_TIMEOUT"]
    with time_machine.travel(timedelta(0), tick=False) as clock:
        login(alice)
        clock.shift(idle - timedelta(minutes=2))
        assert alice.get("/check_session").status_code == 200  # activity resets the idle clock
        clock.shift(idle - timedelta(minutes=2))
        assert alice.get("/check_session").status_code == 200
        clock.shift(idle + timedelta(seconds=1))
        response = alice.get("/check_session")
        assert response.status_code == 401
        assert "session=;" in response.headers["Set-Cookie"]


def test_session_has_an_absolute_lifetime_despite_activity(signup, app):
    alice = signup("alice")
    step = app.config["SESSION_IDLE_TIMEOUT"] - timedelta(minutes=5)
    lifetime = app.config["SESSION_LIFETIME"]
    with time_machine.travel(timedelta(0), tick=False) as clock:
        login(alice)
        elapsed = timedelta(0)
        while elapsed + step < lifetime:
            clock.shift(step)
            elapsed += step
            assert alice.get("/check_session").status_code == 200
        clock.shift(lifetime - elapsed + timedelta(seconds=1))
        assert alice.get("/check_session").status_code == 401


def test_remembered_session_outlives_the_idle_timeout_but_not_its_lifetime(signup, app):
    alice = signup("alice")
    with time_machine.travel(timedelta(0), tick=False) as clock:
        login(alice, remember=True)
        clock.shift(timedelta(days=3))
        assert alice.get("/check_session").status_code == 200
        clock.shift(app.config["SESSION_REMEMBER_LIFETIME"])
        assert alice.get("/check_session").status_code == 401


def test_expired_session_row_is_deleted_when_presented(signup, app, sql):
    alice = signup("alice")
    with time_machine.travel(timedelta(0), tick=False) as clock:
        login(alice)
        clock.shift(app.config["SESSION_LIFETIME"] + timedelta(seconds=1))
        alice.get("/check_session")
    assert sql("SELECT count(*) FROM sessions") == [(0,)]


def test_last_seen_is_written_at_most_once_a_minute(signup, queries):
    alice = signup("alice")
    with time_machine.travel(timedelta(0), tick=False) as clock:
        login(alice)
        with queries() as statements:
            for _ in range(5):
                clock.shift(timedelta(seconds=10))
                alice.get("/check_session")
        assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE")]

        clock.shift(timedelta(seconds=15))  # 65 s since login
        with queries() as statements:
            alice.get("/check_session")
            alice.get("/check_session")
        assert len([s for s in statements if s.lstrip().upper().startswith("UPDATE")]) == 1


def test_session_records_address_and_user_agent(app, sql):
    client = app.test_client()
    client.post(
        "/signup",
        json={"username": "alice", "password": PASSWORD},
        headers={"User-Agent": "pytest-agent/1"},
    )
    address = client.environ_base["REMOTE_ADDR"]
    assert sql("SELECT ip, user_agent, remember FROM sessions") == [
        (address, "pytest-agent/1", False)
    ]


def test_deleting_a_user_deletes_their_sessions(signup, sql, app):
    alice = signup("alice")
    key = cookie_of(alice)
    sql_rows = sql("SELECT count(*) FROM sessions")
    assert sql_rows == [(1,)]
    from config import db
    from models import User

    with app.app_context():
        db.session.delete(db.session.get(User, alice.user["id"]))
        db.session.commit()
    assert sql("SELECT count(*) FROM sessions") == [(0,)]
    assert replay(app, key).get("/check_session").status_code == 401


def test_responses_that_read_the_session_vary_on_cookie(signup):
    alice = signup("alice")
    for response in (alice.get("/check_session"), alice.get("/posts")):
        assert "Cookie" in response.headers["Vary"]
