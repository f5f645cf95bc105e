"""Races and edge cases: a login racing a password change, concurrent deletes, odd headers."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urljoin

import pytest
import time_machine
from flask.testing import FlaskClient
from sqlalchemy import text

import credentials
import resources.account
import resources.posts
from apprunner import run_app
from config import db
from conftest import PASSWORD, link_token

NEW_PASSWORD = "a brand new passphrase"


def concurrently(app, statement):
    """Run SQL on a connection of its own and commit: another request doing it meanwhile."""
    with app.app_context():
        with db.engine.begin() as connection:
            connection.execute(text(statement))


def test_a_login_past_its_password_check_when_the_password_changes_gets_no_session(
    app, signup, monkeypatch
):
    signup("alice")
    real = credentials.password_matches

    def password_changes_meanwhile(user, password):
        ok = real(user, password)
        concurrently(app, "UPDATE users SET auth_version = auth_version + 1")
        return ok

    monkeypatch.setattr(credentials, "password_matches", password_changes_meanwhile)
    attacker = app.test_client()
    login = attacker.post("/login", json={"username": "alice", "password": PASSWORD})
    token = attacker.post("/tokens", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200 and token.status_code == 201  # the race was lost...
    assert attacker.get("/me").status_code == 401  # ...but what it won is worthless
    bearer = {"Authorization": f"Bearer {token.get_json()['token']}"}
    assert app.test_client().get("/me", headers=bearer).status_code == 401


def test_a_password_change_keeps_the_callers_own_bearer_token(app, signup):
    signup("alice")
    mine = new_token(app)
    other = new_token(app)
    client = app.test_client()
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert client.put("/me/password", json=body, headers=bearer(mine)).status_code == 204
    assert client.get("/me", headers=bearer(mine)).status_code == 200
    assert client.get("/me", headers=bearer(other)).status_code == 401


def new_token(app):
    response = app.test_client().post("/tokens", json={"username": "alice", "password": PASSWORD})
    return response.get_json()["token"]


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def test_disabling_also_ends_a_login_already_under_way(app, signup, monkeypatch):
    signup("alice")
    admin = signup("admin-user")
    concurrently(app, "UPDATE users SET role = 'admin' WHERE username = 'admin-user'")
    real = credentials.password_matches

    def disabled_meanwhile(user, password):
        ok = real(user, password)
        assert admin.patch(f"/admin/users/{user.id}", json={"disabled": True}).status_code == 200
        return ok

    monkeypatch.setattr(credentials, "password_matches", disabled_meanwhile)
    attacker = app.test_client()
    attacker.post("/login", json={"username": "alice", "password": PASSWORD})
    assert attacker.get("/me").status_code == 401


def test_changing_the_email_needs_the_current_password(verified, sql):
    alice = verified("alice")
    missing = alice.patch("/me", json={"email": "mallory@evil.example"})
    assert missing.status_code == 422
    assert list(missing.get_json()["errors"]) == ["current_password"]
    wrong = alice.patch(
        "/me", json={"email": "mallory@evil.example", "current_password": "wrong password"}
    )
    assert wrong.status_code == 403
    assert sql("SELECT email FROM users") == [("alice@example.com",)]
    assert alice.patch("/me", json={"username": "alicia"}).status_code == 200  # no password


def test_reset_links_die_when_the_address_changes(app, verified, mailbox):
    alice = verified("alice")
    app.test_client().post("/password-reset", json={"email": "alice@example.com"})
    token = link_token(mailbox.deliver()[0])
    alice.patch("/me", json={"email": "new@example.com", "current_password": PASSWORD})
    response = app.test_client().post(
        "/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 422


def test_no_mail_goes_to_an_address_nobody_has_verified(signup, mailbox):
    alice = signup("alice", email="stranger@example.org")  # not verified
    mailbox.deliver()  # the confirmation link (a mail that asks, and is limited)
    alice.put("/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    for i in range(5):
        alice.patch(
            "/me", json={"email": f"victim{i}@example.org", "current_password": NEW_PASSWORD}
        )
    assert mailbox.deliver() == []


def test_a_reset_link_is_used_once_even_by_two_requests_at_the_same_moment(
    app, verified, mailbox, monkeypatch
):
    verified("alice")
    app.test_client().post("/password-reset", json={"email": "alice@example.com"})
    token = link_token(mailbox.deliver()[0])
    barrier = threading.Barrier(2)
    real = resources.account.check_new_password

    def both_past_the_lookup(user, password, field="new_password"):
        barrier.wait(timeout=10)
        return real(user, password, field)

    monkeypatch.setattr(resources.account, "check_new_password", both_past_the_lookup)

    def confirm(password):
        return (
            app.test_client()
            .post("/password-reset/confirm", json={"token": token, "new_password": password})
            .status_code
        )

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(confirm, [NEW_PASSWORD, "another new passphrase"]))
    assert statuses == [204, 422]


def test_a_session_deleted_during_a_request_is_not_a_500(app, signup, monkeypatch, sql):
    alice = signup("alice")
    real = resources.posts.json_body

    def logged_out_elsewhere_meanwhile():
        concurrently(app, "DELETE FROM sessions")
        return real()

    monkeypatch.setattr(resources.posts, "json_body", logged_out_elsewhere_meanwhile)
    with time_machine.travel(timedelta(minutes=2)):  # so this request would touch last_seen
        response = alice.post("/posts", json={"content": "hello"})
    assert response.status_code == 201
    assert sql("SELECT count(*) FROM posts") == [(1,)]


def test_a_post_deleted_during_its_edit_is_a_404(app, signup, monkeypatch):
    alice = signup("alice")
    post_id = alice.post("/posts", json={"content": "x"}).get_json()["id"]
    real = resources.posts.post_content_schema.load

    def deleted_meanwhile(data):
        concurrently(app, "DELETE FROM posts")
        return real(data)

    monkeypatch.setattr(resources.posts.post_content_schema, "load", deleted_meanwhile)
    response = alice.patch(f"/posts/{post_id}", json={"content": "edited"})
    assert response.status_code == 404
    assert response.is_json


@pytest.mark.parametrize(
    "referer", ["http://a:xx/", "http://[::1/", "https://evil.example:99999/", "ftp://x/y", "::"]
)
def test_an_unreadable_referer_is_a_cross_site_refusal_not_a_500(signup, referer):
    alice = signup("alice")
    response = alice.post("/posts", json={"content": "x"}, headers={"Referer": referer})
    assert response.status_code == 403
    assert response.get_json() == {
        "error": "Cross-site request refused: its Referer is not an http(s) URL with a valid "
        "origin."
    }


@pytest.mark.parametrize("path", ["/posts//1", "//posts", "/admin//users"])
def test_double_slashes_are_a_json_404_not_an_html_redirect(signup, path):
    response = signup("alice").get(path)
    assert response.status_code == 404
    assert response.is_json


def test_routes_with_their_own_limits_keep_the_default_one(app, signup):
    alice = signup("alice")
    client = app.test_client(use_cookies=False)  # so every login counts for this address
    body = {"username": "alice", "password": PASSWORD}
    statuses = [client.post("/login", json=body).status_code for _ in range(301)]
    assert statuses[:300] == [200] * 300 and statuses[300] == 429
    patches = [alice.patch("/me", json={"username": "alice"}).status_code for _ in range(301)]
    assert patches[-1] == 429


def test_wrong_passwords_at_delete_me_do_not_lock_the_profile(signup):
    alice = signup("alice")
    for _ in range(6):
        alice.delete("/me", json={"password": "wrong password"})
    assert alice.get("/me").status_code == 200
    assert alice.patch("/me", json={"username": "alicia"}).status_code == 200


def test_emails_compare_without_regard_to_case_on_every_database(app, client, verified, sql):
    verified("elodie")
    signup = {"username": "other", "password": PASSWORD, "email": "ELODIE@example.COM"}
    assert client.post("/signup", json=signup).status_code == 201  # an unverified claim
    assert sql("SELECT email FROM users ORDER BY id") == [("elodie@example.com",)] * 2
    with pytest.raises(Exception, match="(?i)unique"):  # never a second verified owner
        with app.app_context():
            db.session.execute(
                text("UPDATE users SET email_verified_at = created_at WHERE username = 'other'")
            )
            db.session.commit()


def test_the_api_proxied_under_the_apps_origin_accepts_the_apps_writes(tmp_path):
    proxied = {
        "Origin": "https://example.com",
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "example.com",
        "X-Forwarded-Prefix": "/api",
    }
    steps = [
        {
            "method": "POST",
            "path": "/signup",
            "headers": proxied,
            "json": {"username": "alice", "password": PASSWORD},
        },
        {"method": "POST", "path": "/posts", "headers": proxied, "json": {"content": "one"}},
        {"method": "POST", "path": "/posts", "headers": proxied, "json": {"content": "two"}},
        {"method": "GET", "path": "/posts?limit=1", "headers": proxied},
    ]
    results, _ = run_app(steps, {"TRUSTED_PROXY_COUNT": "1"}, tmp_path)
    assert [r["status"] for r in results] == [201, 201, 201, 200]
    # Link and Location are relative: resolved against the URL the browser called, they stay
    # under /api (an absolute URL from the Host the API saw would leave the proxy's prefix)
    called = "https://example.com/api/posts?limit=1"
    link = results[3]["headers"]["Link"].split(">")[0][1:]
    assert urljoin(called, link).startswith("https://example.com/api/posts?limit=1&before=")
    location = results[1]["headers"]["Location"]
    assert urljoin("https://example.com/api/posts", location) == (
        f"https://example.com/api/posts/{results[1]['body']['id']}"
    )


def test_a_failed_login_answers_before_recording_anything(app, signup, queries):
    """The history entry for a real account's failed login is written after the response,
    so the answer costs the same work as for a username nobody has."""
    signup("alice")
    work = []
    for username in ("alice", "nobody"):
        client = FlaskClient(app, app.response_class, use_cookies=True)  # not closed yet
        with queries() as statements:
            response = client.post("/login", json={"username": username, "password": "wrong one"})
        work.append([s.split()[0] for s in statements])
        response.close()  # what the server does once the answer is sent
    assert work[0] == work[1]


def test_the_default_limit_of_a_route_does_not_depend_on_which_method_ran_first(signup):
    alice = signup("alice")
    alice.patch("/me", json={"username": "alice"})  # a method with a limit of its own, first
    statuses = [alice.get("/me").status_code for _ in range(300)]
    assert statuses.count(200) == 299 and statuses[-1] == 429  # one bucket for the route
