"""Roles and administration: the CLI makes the first admin; admins list, search, disable."""

import os
import subprocess

import pytest

from conftest import PASSWORD, ROOT, enable_totp
from services import FLASK

ADMINS_ONLY = {"error": "Administrators only."}


def promote(app, username):
    result = app.test_cli_runner().invoke(args=["users", "promote", username])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def admin(app, signup):
    client = signup("root-admin")
    promote(app, "root-admin")
    enable_totp(client)  # MFA_REQUIRED_ROLES: admins need a second factor
    return client


def test_the_cli_promotes_and_demotes(app, signup):
    alice = signup("alice")
    assert promote(app, "ALICE") == "alice is now an admin.\n"
    assert alice.get("/me").get_json()["role"] == "admin"
    signup("bob")
    promote(app, "bob")  # never the last active admin (tests/test_last_admin.py)
    result = app.test_cli_runner().invoke(args=["users", "demote", "alice"])
    assert result.output == "alice is now a user.\n"
    assert alice.get("/me").get_json()["role"] == "user"


def test_the_cli_names_an_unknown_user(app):
    result = app.test_cli_runner().invoke(args=["users", "promote", "nobody"])
    assert result.exit_code == 1
    assert "no user named 'nobody'" in result.output


def test_the_documented_command_works(signup, sql):
    signup("alice")
    done = subprocess.run(
        [*FLASK, "users", "promote", "alice"],
        cwd=ROOT,
        env={**os.environ, "APP_ENV": "testing"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert sql("SELECT role FROM users") == [("admin",)]


@pytest.mark.parametrize("method, path", [("get", "/admin/users"), ("patch", "/admin/users/1")])
def test_admin_routes_are_403_for_users_and_401_for_strangers(signup, client, method, path):
    alice = signup("alice")
    response = getattr(alice, method)(path, json={"role": "admin"})
    assert response.status_code == 403
    assert response.get_json() == ADMINS_ONLY
    assert getattr(client, method)(path, json={"role": "admin"}).status_code == 401
    assert alice.get("/me").get_json()["role"] == "user"


def test_list_and_search_users(admin, signup):
    signup("alice", email="alice@example.com")
    signup("bob_x", email="50%off@example.org")
    signup("carol")
    everyone = admin.get("/admin/users").get_json()
    assert [u["username"] for u in everyone] == ["carol", "bob_x", "alice", "root-admin"]
    assert set(everyone[0]) == {
        "id",
        "username",
        "email",
        "email_verified",
        "role",
        "disabled",
        "created_at",
    }
    search = lambda q: [u["username"] for u in admin.get(f"/admin/users?q={q}").get_json()]  # noqa: E731
    assert search("ALI") == ["alice"]
    assert search("example.org") == ["bob_x"]
    assert search("%25") == ["bob_x"]  # a literal %, not a wildcard
    assert search("_") == ["bob_x"]  # a literal _, not a wildcard
    assert search("zzz") == []


def test_user_list_is_paginated(admin, signup):
    for i in range(4):
        signup(f"user{i}")
    first = admin.get("/admin/users?limit=2")
    assert [u["username"] for u in first.get_json()] == ["user3", "user2"]
    assert 'rel="next"' in first.headers["Link"]


def test_disabling_ends_every_session_and_token_at_once(app, admin, signup):
    alice = signup("alice")
    token = app.test_client().post("/tokens", json={"username": "alice", "password": PASSWORD})
    secret = token.get_json()["token"]
    response = admin.patch(f"/admin/users/{alice.user['id']}", json={"disabled": True})
    assert response.status_code == 200 and response.get_json()["disabled"] is True

    assert alice.get("/check_session").status_code == 401
    bearer = {"Authorization": f"Bearer {secret}"}
    assert app.test_client().get("/me", headers=bearer).status_code == 401
    login = app.test_client().post("/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 401
    assert login.get_json() == {"error": "Invalid username or password."}  # the same generic 401

    admin.patch(f"/admin/users/{alice.user['id']}", json={"disabled": False})
    again = app.test_client().post("/login", json={"username": "alice", "password": PASSWORD})
    assert again.status_code == 200


def test_disabled_events_are_in_the_users_history(app, admin, signup):
    alice = signup("alice")
    admin.patch(f"/admin/users/{alice.user['id']}", json={"disabled": True})
    admin.patch(f"/admin/users/{alice.user['id']}", json={"disabled": False})
    client = app.test_client()
    client.post("/login", json={"username": "alice", "password": PASSWORD})
    types = [e["type"] for e in client.get("/me/security-events").get_json()]
    assert types[:4] == ["new_device_login", "login", "account_enabled", "account_disabled"]


def test_change_role(admin, signup):
    alice = signup("alice")
    response = admin.patch(f"/admin/users/{alice.user['id']}", json={"role": "admin"})
    assert response.status_code == 200 and response.get_json()["role"] == "admin"
    refused = alice.get("/admin/users")  # an admin without a second factor (MFA_REQUIRED_ROLES)
    assert refused.status_code == 403 and refused.get_json()["mfa_setup_required"] is True
    enable_totp(alice)
    assert alice.get("/admin/users").status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"role": "root"}, "role"),
        ({"disabled": "yes"}, "disabled"),
        ({}, "_schema"),
        ({"username": "x"}, "username"),
    ],
)
def test_admin_update_validation(admin, signup, body, field):
    alice = signup("alice")
    response = admin.patch(f"/admin/users/{alice.user['id']}", json=body)
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == [field]


def test_admins_cannot_demote_or_disable_themselves(admin):
    me = admin.get("/me").get_json()
    response = admin.patch(f"/admin/users/{me['id']}", json={"disabled": True})
    assert response.status_code == 422
    assert admin.get("/me").get_json()["role"] == "admin"


def test_unknown_user_is_404(admin):
    assert admin.patch("/admin/users/999999", json={"role": "admin"}).status_code == 404


def test_admins_may_delete_any_post_but_not_edit_it(admin, signup, sql):
    alice = signup("alice")
    post_id = alice.post("/posts", json={"content": "mine"}).get_json()["id"]
    assert admin.patch(f"/posts/{post_id}", json={"content": "edited"}).status_code == 403
    assert admin.delete(f"/posts/{post_id}").status_code == 204
    assert sql("SELECT count(*) FROM posts") == [(0,)]
