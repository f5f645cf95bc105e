"""Bad input never breaks anything: every error is the house JSON, nothing half-written."""

import logging

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import ROUTES
from config import db
from conftest import PASSWORD

LEAKS = (
    "<html",
    "Traceback",
    'File "',
    "sqlalchemy",
    "psycopg",
    "SELECT",
    "INSERT",
    "postgres://",
    "$2b$",
    "secret-marker",
)


def assert_clean_json_error(response, status):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"error", "errors"}
    text = response.get_data(as_text=True)
    assert not [leak for leak in LEAKS if leak in text], text


@pytest.fixture(params=[True, False], ids=["testing", "not-testing"])
def testing_mode(request, app, monkeypatch):
    """Flask-RESTful handles errors differently with TESTING off; check both."""
    monkeypatch.setitem(app.config, "TESTING", request.param)
    return request.param


POST_ROUTES = ["/signup", "/login", "/posts"]


@pytest.fixture
def alice(signup):
    return signup("alice")


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_non_json_bodies_are_415(alice, testing_mode, path, content_type, sql):
    headers = {"Content-Type": content_type} if content_type else {}
    before = sql("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM posts)")
    response = alice.post(
        path, data='{"username":"x1x","password":"yyyyyyyyyy","content":"z"}', headers=headers
    )
    assert_clean_json_error(response, 415)
    assert sql("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM posts)") == before


def test_json_with_charset_is_accepted(client):
    response = client.post(
        "/signup",
        data='{"username": "alice", "password": "correct horse"}',
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 201


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize("body", [b'{"username":', b"{'a':1}", b'{"content":"\xff\xfe"}', b""])
def test_malformed_json_is_400(alice, testing_mode, path, body):
    response = alice.post(path, data=body, content_type="application/json")
    assert_clean_json_error(response, 400)
    assert response.get_json() == {"error": "Request body is not valid JSON."}


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize("body", [b"[]", b"[1,2]", b'"x"', b"null", b"123", b"true"])
def test_top_level_non_objects_are_400(alice, testing_mode, path, body):
    response = alice.post(path, data=body, content_type="application/json")
    assert_clean_json_error(response, 400)
    assert response.get_json() == {"error": "Request body must be a JSON object."}


@pytest.mark.parametrize("path", POST_ROUTES)
def test_deeply_nested_json_is_400_not_a_recursion_error(alice, testing_mode, path):
    body = '{"content":' + "[" * 3000 + "]" * 3000 + "}"
    response = alice.post(path, data=body, content_type="application/json")
    assert_clean_json_error(response, 400)
    assert response.get_json() == {"error": "Request body is nested too deeply."}


def test_patch_gets_the_same_body_checks(alice, testing_mode):
    post_id = alice.post("/posts", json={"content": "x"}).get_json()["id"]
    assert_clean_json_error(
        alice.patch(f"/posts/{post_id}", data="x", content_type="text/plain"), 415
    )
    assert_clean_json_error(
        alice.patch(f"/posts/{post_id}", data="[", content_type="application/json"), 400
    )


def test_body_over_1mb_is_413(alice, testing_mode, sql):
    body = '{"content":"' + "x" * (1024 * 1024) + '"}'
    response = alice.post("/posts", data=body, content_type="application/json")
    assert_clean_json_error(response, 413)
    assert sql("SELECT count(*) FROM posts") == [(0,)]


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab\u0000c", "password": PASSWORD},
        {"username": "alice", "password": "pass\u0000word-long"},
        {"username": "a\ud800b", "password": PASSWORD},
        {"username": "alice", "password": "pass\udfffword-long"},
    ],
)
@pytest.mark.parametrize("path", ["/signup", "/login"])
def test_nul_bytes_and_lone_surrogates_are_422(client, testing_mode, path, body, sql):
    response = client.post(path, json=body)
    assert_clean_json_error(response, 422)
    assert sql("SELECT count(*) FROM users") == [(0,)]


def test_nan_is_not_a_string(alice, testing_mode):
    response = alice.post("/posts", data='{"content": NaN}', content_type="application/json")
    assert_clean_json_error(response, 422)


def test_duplicate_keys_keep_the_last_value(alice):
    response = alice.post(
        "/posts", data='{"content":"a","content":"b"}', content_type="application/json"
    )
    assert response.get_json()["content"] == "b"


def test_unknown_url_is_json_404(client, testing_mode):
    assert_clean_json_error(client.get("/nope"), 404)
    assert_clean_json_error(client.post("/posts/1/comments", json={}), 404)


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("put", "/signup", {"POST", "OPTIONS"}),
        ("get", "/login", {"POST", "OPTIONS"}),
        ("get", "/logout", {"DELETE", "OPTIONS"}),
        ("post", "/check_session", {"GET", "HEAD", "OPTIONS"}),
        ("put", "/posts", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("put", "/posts/1", {"GET", "HEAD", "PATCH", "DELETE", "OPTIONS"}),
    ],
)
def test_wrong_method_is_json_405_with_allow(alice, testing_mode, method, path, allowed):
    response = getattr(alice, method)(path)
    assert_clean_json_error(response, 405)
    assert set(response.headers["Allow"].split(", ")) == allowed


def test_trace_is_405(client, testing_mode):
    assert_clean_json_error(client.open("/posts", method="TRACE"), 405)


def test_every_protected_route_refuses_anonymous_callers(app, client):
    """Walks the URL map, so a new route cannot be added without the guard covering it."""
    public = {(route.endpoint, method) for route in ROUTES for method in route.public}
    checked = 0
    for rule in app.url_map.iter_rules():
        path = rule.build({arg: 1 for arg in rule.arguments}, append_unknown=False)[1]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (rule.endpoint, method) in public:
                continue
            response = client.open(path, method=method, json={})
            assert response.status_code == 401, (method, path)
            assert response.get_json() == {"error": "Authentication required."}
            checked += 1
    assert checked >= 20


def test_failure_inside_a_request_rolls_it_back(alice, testing_mode, monkeypatch, sql, caplog):
    """A crash at commit time: 500 JSON, nothing written, no secret in the body, logged."""

    def explode():
        raise RuntimeError("secret-marker postgres://u:p@h")

    monkeypatch.setattr(db.session, "commit", explode)
    with caplog.at_level(logging.ERROR):
        response = alice.post("/posts", json={"content": "never stored"})
    assert_clean_json_error(response, 500)
    assert response.get_json() == {"error": "Internal server error."}
    assert "secret-marker" in caplog.text  # the traceback goes to the log, not the client
    monkeypatch.undo()
    assert sql("SELECT count(*) FROM posts") == [(0,)]
    assert alice.post("/posts", json={"content": "works again"}).status_code == 201


def test_signup_failure_after_insert_leaves_no_user(client, testing_mode, sql):
    """The INSERT has reached the database when the failure hits; it must not stay there."""

    def fail_after_flush(session, flush_context):
        raise RuntimeError("secret-marker")

    event.listen(Session, "after_flush", fail_after_flush)
    try:
        response = client.post("/signup", json={"username": "alice", "password": PASSWORD})
    finally:
        event.remove(Session, "after_flush", fail_after_flush)
    assert_clean_json_error(response, 500)
    assert sql("SELECT count(*) FROM users") == [(0,)]


def test_database_outage_is_503(alice, testing_mode, monkeypatch, sql):
    def down():
        raise OperationalError("INSERT INTO posts", {}, Exception("connection refused"))

    monkeypatch.setattr(db.session, "commit", down)
    response = alice.post("/posts", json={"content": "x"})
    monkeypatch.undo()
    assert_clean_json_error(response, 503)
    assert sql("SELECT count(*) FROM posts") == [(0,)]


def test_authorization_fails_closed(signup, testing_mode, monkeypatch, sql):
    import resources.posts as app_module

    alice = signup("alice")
    bob = signup("bobby")
    post_id = alice.post("/posts", json={"content": "keep"}).get_json()["id"]

    def broken(*args, **kwargs):
        raise RuntimeError("loader broke")

    monkeypatch.setattr(app_module, "get_post", broken)
    assert_clean_json_error(bob.delete(f"/posts/{post_id}"), 500)
    assert sql("SELECT count(*) FROM posts") == [(1,)]


def test_logs_carry_no_passwords_or_cookies(client, caplog):
    with caplog.at_level(logging.DEBUG):
        client.post("/signup", json={"username": "alice", "password": PASSWORD})
        client.post("/login", json={"username": "alice", "password": "wrong " + PASSWORD})
        cookie = client.get_cookie("session").value
        client.get("/check_session")
    assert PASSWORD not in caplog.text and cookie not in caplog.text
