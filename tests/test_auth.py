"""Sign up, log in, check the session, log out: the seed lesson's routes and their contract."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from config import bcrypt, db
from conftest import PASSWORD
from models import User

INVALID_LOGIN = {"error": "Invalid username or password."}
UNAUTHENTICATED = {"error": "Authentication required."}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def test_signup_creates_user_logs_in_and_returns_owner_view(client, sql):
    response = client.post("/signup", json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "username", "created_at", "email", "email_verified", "role"}
    assert (body["username"], body["email"], body["email_verified"], body["role"]) == (
        "alice",
        None,
        False,
        "user",
    )
    assert ISO_UTC.fullmatch(body["created_at"])
    assert client.get("/check_session").get_json() == body
    [(stored,)] = sql("SELECT password_hash FROM users WHERE id = :id", id=body["id"])
    assert re.fullmatch(r"\$2b\$04\$.{53}", stored)  # bcrypt at the test cost, never plaintext
    assert PASSWORD not in stored


def test_signup_response_never_contains_password_or_hash(client):
    text = client.post("/signup", json={"username": "alice", "password": PASSWORD}).get_data(
        as_text=True
    )
    assert PASSWORD not in text and "$2b$" not in text and "password" not in text


def test_same_password_gets_different_hashes(signup, sql):
    signup("alice")
    signup("bobby")
    hashes = {row[0] for row in sql("SELECT password_hash FROM users")}
    assert len(hashes) == 2


@pytest.mark.parametrize("taken", ["alice", "ALICE", "Alice"])
def test_duplicate_username_is_422_without_regard_to_case(signup, client, taken, sql):
    signup("Alice")
    response = client.post("/signup", json={"username": taken, "password": PASSWORD})

    assert response.status_code == 422
    assert response.get_json() == {
        "error": "That username is taken.",
        "errors": {"username": ["That username is taken."]},
    }
    assert sql("SELECT count(*) FROM users") == [(1,)]
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    "username, ok",
    [
        ("ab", False),
        ("abc", True),
        ("a" * 30, True),
        ("a" * 31, False),
        ("a.b_c-d", True),
        ("has space", False),
        ("émile", False),
        ("ａｌｉｃｅ", False),  # full-width letters would look like "alice"
        ("bob\u0000x", False),
        ("<script>", False),
        ("alice\n", False),
    ],
)
def test_username_rules(client, username, ok, sql):
    response = client.post("/signup", json={"username": username, "password": PASSWORD})
    assert response.status_code == (201 if ok else 422)
    if not ok:
        assert list(response.get_json()["errors"]) == ["username"]
        assert sql("SELECT count(*) FROM users") == [(0,)]


@pytest.mark.parametrize(
    "password, ok",
    [
        ("Tq7#mZ2", False),
        ("Tq7#mZ2p", True),
        ("Ça été très éprouvant : élève, fête, bête, crème brûlée à l'été ", True),  # 80 bytes
        ("x" * 1024, True),
        ("x" * 1025, False),
    ],
)
def test_password_length_rules(client, password, ok):
    response = client.post("/signup", json={"username": "alice", "password": password})
    assert response.status_code == (201 if ok else 422)
    if not ok:
        assert list(response.get_json()["errors"]) == ["password"]
    if ok:
        client.delete("/logout")
        login = client.post("/login", json={"username": "alice", "password": password})
        assert login.status_code == 200


def test_overlong_password_is_rejected_before_any_hashing(client, monkeypatch):
    calls = []
    monkeypatch.setattr(bcrypt, "generate_password_hash", lambda *a: calls.append(a))
    monkeypatch.setattr(bcrypt, "check_password_hash", lambda *a: calls.append(a))
    for path in ("/signup", "/login"):
        response = client.post(path, json={"username": "alice", "password": "x" * 10_000})
        assert response.status_code == 422
        assert response.get_json()["errors"] == {
            "password": [response.get_json()["errors"]["password"][0]]
        }
    assert calls == []


def test_password_and_its_72_byte_prefix_are_different_passwords(client):
    password = "p" * 72 + "-and-the-rest-matters"
    client.post("/signup", json={"username": "alice", "password": password})
    client.delete("/logout")

    prefix = client.post("/login", json={"username": "alice", "password": password[:72]})
    assert prefix.status_code == 401
    assert prefix.get_json() == INVALID_LOGIN
    assert (
        client.post("/login", json={"username": "alice", "password": password}).status_code == 200
    )


def test_passwords_match_exactly(client):
    password = "Correct Horse 🐎 ünï"
    client.post("/signup", json={"username": "alice", "password": password})
    client.delete("/logout")
    for wrong in ("correct horse 🐎 ünï", password + " ", " " + password, password[:-1]):
        assert (
            client.post("/login", json={"username": "alice", "password": wrong}).status_code == 401
        )
    assert (
        client.post("/login", json={"username": "alice", "password": password}).status_code == 200
    )


def test_login_returns_owner_view_and_sets_user_id(signup, client):
    alice = signup("alice")
    response = client.post("/login", json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 200
    assert response.get_json() == alice.user
    with client.session_transaction() as session:
        assert session["user_id"] == alice.user["id"]


def test_login_is_case_insensitive_for_the_username(signup, client):
    signup("Alice")
    assert (
        client.post("/login", json={"username": "aLiCe", "password": PASSWORD}).status_code == 200
    )


@pytest.mark.parametrize(
    "username, password",
    [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("' OR '1'='1' --", PASSWORD),
        ("al", PASSWORD),
    ],
)
def test_login_failures_are_one_identical_401(signup, client, username, password, sql):
    signup("alice")
    response = client.post("/login", json={"username": username, "password": password})

    assert response.status_code == 401
    assert response.get_data() == b'{"error":"Invalid username or password."}\n'
    assert "Set-Cookie" not in response.headers
    assert sql("SELECT count(*) FROM sessions") == [(1,)]  # only alice's signup session


def test_unknown_user_costs_the_same_bcrypt_work_as_a_wrong_password(signup, client, monkeypatch):
    signup("alice")
    calls = []
    real = bcrypt.check_password_hash

    def counting(pw_hash, password):
        calls.append(int(pw_hash.split("$")[2]))  # the cost the check ran at
        return real(pw_hash, password)

    monkeypatch.setattr(bcrypt, "check_password_hash", counting)
    client.post("/login", json={"username": "nobody", "password": "whatever1"})
    unknown = list(calls)
    calls.clear()
    client.post("/login", json={"username": "alice", "password": "whatever1"})

    assert unknown == calls == [4]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"username": "alice"},
        {"password": PASSWORD},
        {"username": 123, "password": PASSWORD},
        {"username": ["alice"], "password": {"$ne": 1}},
        {"username": None, "password": None},
        {"username": "alice", "password": PASSWORD, "remember": "yes"},
        {"username": "alice", "password": PASSWORD, "remember": 1},
        {"username": "alice", "password": PASSWORD, "is_admin": True},
    ],
)
def test_bad_login_bodies_are_422(signup, client, body):
    signup("alice")
    response = client.post("/login", json=body)
    assert response.status_code == 422
    assert set(response.get_json()) == {"error", "errors"}


@pytest.mark.parametrize(
    "extra", [{"id": 999}, {"password_hash": "$2b$04$" + "x" * 53}, {"role": "admin"}]
)
def test_signup_rejects_fields_it_does_not_own(client, extra, sql):
    response = client.post("/signup", json={"username": "mal", "password": PASSWORD, **extra})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {next(iter(extra)): ["Unknown field."]}
    assert sql("SELECT count(*) FROM users") == [(0,)]


def test_check_session_requires_login(client):
    response = client.get("/check_session")
    assert response.status_code == 401
    assert response.get_json() == UNAUTHENTICATED


def test_logout_ends_the_session(signup):
    alice = signup("alice")
    response = alice.delete("/logout")

    assert response.status_code == 204
    assert response.get_data() == b""
    assert alice.get("/check_session").status_code == 401
    with alice.session_transaction() as session:
        assert "user_id" not in session


def test_logout_without_a_session_is_401(client):
    response = client.delete("/logout")
    assert response.status_code == 401
    assert response.get_json() == UNAUTHENTICATED


def test_get_logout_does_not_log_out(signup):
    alice = signup("alice")
    response = alice.get("/logout")
    assert response.status_code == 405
    assert alice.get("/check_session").status_code == 200


def test_lesson_model_api(app):
    """The seed lesson's in-process API: write-only password_hash and authenticate()."""
    with app.app_context():
        user = User(username="lesson")
        user.password_hash = "s3cret-password"
        db.session.add(user)
        db.session.commit()

        with pytest.raises(AttributeError):
            user.password_hash  # noqa: B018
        assert user.authenticate("s3cret-password") is True
        assert user.authenticate("wrong") is False


def test_session_transaction_can_log_a_test_client_in(app, client):
    """Lesson-style tests set session["user_id"] directly; the server-side store honours it."""
    with app.app_context():
        user = User(username="lesson", password_hash="s3cret-password")
        db.session.add(user)
        db.session.commit()
        user_id = user.id
    with client.session_transaction() as session:
        session["user_id"] = user_id
    assert client.get("/check_session").get_json()["id"] == user_id


def test_concurrent_duplicate_signups_give_one_201_and_422s(app, sql):
    """The database's unique index decides the race: never a 500, never two rows."""
    threads = 12
    barrier = threading.Barrier(threads)

    def attempt(i):
        client = app.test_client()
        barrier.wait()
        name = "dupe_user" if i % 2 else "DUPE_USER"
        return client.post("/signup", json={"username": name, "password": PASSWORD}).status_code

    with ThreadPoolExecutor(threads) as pool:
        statuses = sorted(pool.map(attempt, range(threads)))

    assert statuses == [201] + [422] * (threads - 1)
    assert sql("SELECT count(*) FROM users") == [(1,)]
