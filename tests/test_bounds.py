"""Cheap bounds first: no field reaches an expensive parser, hasher or regex before its length
is checked. A one-megabyte "email" once cost 0.35-0.49 s of CPU in the address validator, and
any logged-in user may send 300 a minute. Here every string field of every route's body is sent
at nearly 1 MB, and the expensive steps must never see it. (`make bench-bounds` times them.)"""

import pytest
import zxcvbn

import field_types
import passwords
from config import bcrypt
from conftest import PASSWORD

HUGE = "a" * (1024 * 1024 - 400)  # the largest value a body under the 1 MB limit can carry
OK = {
    "username": "mallory",
    "password": PASSWORD,
    "new_password": "another passphrase",
    "current_password": PASSWORD,
    "email": "m@example.com",
    "token": "x" * 43,
    "content": "hello",
    "name": "laptop",
}

ROUTES = [  # method, path, the body's string fields
    ("POST", "/signup", ["username", "password", "password_confirmation", "email"]),
    ("POST", "/login", ["username", "password"]),
    ("POST", "/tokens", ["username", "password", "name"]),
    ("PATCH", "/me", ["username", "email", "current_password"]),
    ("DELETE", "/me", ["password"]),
    ("PUT", "/me/password", ["current_password", "new_password"]),
    ("POST", "/password-reset", ["email"]),
    ("POST", "/password-reset/confirm", ["token", "new_password"]),
    ("POST", "/email-verification/confirm", ["token"]),
    ("POST", "/posts", ["content"]),
]
CASES = [(method, path, fields, field) for method, path, fields in ROUTES for field in fields]


@pytest.fixture
def expensive(monkeypatch):
    """Every call of the costly steps, with the length of what each was handed."""
    seen = []

    def spy(name, target, attribute, size):
        real = getattr(target, attribute)

        def wrapper(*args, **kwargs):
            seen.append((name, size(*args, **kwargs)))
            return real(*args, **kwargs)

        monkeypatch.setattr(target, attribute, wrapper)

    spy("email validator", field_types, "validate_email", lambda value, **_: len(value))
    spy("password strength", zxcvbn, "zxcvbn", lambda value, **_: len(value))
    spy("pre-hash", passwords, "_prehash", lambda value: len(value))
    spy("bcrypt", bcrypt, "check_password_hash", lambda _hash, value: len(value))
    return seen


@pytest.mark.parametrize(
    "method, path, fields, field", CASES, ids=[f"{m} {p} {f}" for m, p, _, f in CASES]
)
def test_a_huge_field_is_refused_before_anything_costly_sees_it(
    signup, expensive, method, path, fields, field
):
    signup("mallory")
    alice = signup("alice")
    body = {name: OK.get(name, PASSWORD) for name in fields}
    body[field] = HUGE if field != "email" else HUGE + "@example.com"
    expensive.clear()
    response = alice.open(path, method=method, json=body)
    assert response.status_code == 422, response.get_json()
    assert all(size <= 1024 for _, size in expensive), [
        (name, size) for name, size in expensive if size > 1024
    ]
