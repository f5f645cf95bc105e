"""Checking and changing credentials: who a login names, the limits on guessing a password,
the one generic 401, and setting a new password, which ends every other way in.

Wrong passwords count against limits, with guesses admitted before the check so that concurrent
ones cannot pass them (ratelimit.GuessLimit). Once an account's limit from an address is used
up, even the right password gets 429 until the window passes; the per-address limit stops one
address spraying many accounts.
"""

import hashlib
from contextlib import AbstractContextManager
from typing import Any, NoReturn

from flask import abort, g
from sqlalchemy import func, select

from caller import current_session_id
from config import db
from errors import InvalidInput, invalid, refuse
from events import Origin, after_response, record_event, record_event_after_response
from field_types import USERNAME_RE, email_lookup
from mailer import notify_owner
from mfa import (
    accept_totp,
    has_second_factor,
    login_methods,
    recovery_codes_left,
    totp_factor,
    typed_digits,
    use_recovery_code,
)
from models import SecurityEvent, User
from passwords import needs_rehash, password_matches, password_problem
from ratelimit import GuessLimit, guessing
from sessions import end_sessions
from throttles import client_address, user_key
from tokens import end_link_tokens, end_tokens

INVALID_LOGIN = "Invalid username or password."
SECOND_FACTOR_REQUIRED = "A second factor is required."
WRONG_CODE = "That code is not right."


def find_login_user(identifier: str) -> User | None:
    """The user a login names: by username, or by a verified email address."""
    if "@" in identifier:
        return db.session.scalar(
            select(User).where(
                func.lower(User.email) == email_lookup(identifier),
                User.email_verified_at.is_not(None),
            )
        )
    if not USERNAME_RE.fullmatch(identifier):
        return None
    return db.session.scalar(select(User).where(func.lower(User.username) == identifier.lower()))


def username_taken() -> InvalidInput:
    """After the unique index refused a write: the username was taken. (Addresses never clash
    here: only a verified address is unique, and a new or changed one is unverified.)"""
    return invalid("username", "That username is taken.")


# --- the limits on guessing ---


def name_digest(name: str) -> str:
    """A submitted login name as a limit's key: in the one form the lookup uses (an address as
    stored, `email_lookup`: `bob@ｅxample.com` is `bob@example.com`; a username lowercased), so
    no other spelling of a name gets a fresh budget; hashed, so any text makes a short key."""
    canonical = email_lookup(name) if "@" in name else name.strip().lower()
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def record_lockout(username: str | None) -> None:
    """The account's owner sees "locked_out" in their history (once per lockout, not per try).
    Looked up and written after the response, so a 429 costs the same for a name nobody has."""

    def write(origin: Origin) -> None:
        user = find_login_user(username or "")
        if user is None:
            return
        last = db.session.scalar(
            select(SecurityEvent.type)
            .where(SecurityEvent.user_id == user.id)
            .order_by(SecurityEvent.id.desc())
            .limit(1)
        )
        if last != "locked_out":
            record_event(user, "locked_out", origin)
            db.session.commit()

    after_response(write)


login_address_limit = GuessLimit("RATELIMIT_LOGIN_ADDRESS", "login-address")
login_account_limit = GuessLimit(
    "RATELIMIT_LOGIN_ACCOUNT", "login-account", on_breach=record_lockout
)
# A wrong current password (PUT /me/password, PATCH /me's email, DELETE /me), per user.
reauth_limit = GuessLimit("RATELIMIT_LOGIN_ACCOUNT", "reauthenticate")


def login_guess(username: str) -> AbstractContextManager[None]:
    """with login_guess(name): check a login's password (POST /login, POST /tokens)."""
    address = client_address()
    return guessing(
        (login_address_limit, address, username),
        (login_account_limit, f"{address}/{name_digest(username)}", username),
    )


# --- checking ---


def check_credentials(data: dict[str, Any]) -> User:
    """The user named by a login, or the one generic 401 (the same bcrypt work either way).
    Every route that checks a login's password comes through here, inside the login limits."""
    with login_guess(data["username"]):  # counted before the check: 429 once used up
        user = find_login_user(data["username"])
        # password_matches first: a name nobody has costs the same bcrypt work
        if not password_matches(user, data["password"]) or user is None or user.disabled:
            if user is not None:
                record_event_after_response(user, "login_failed")
            abort(401, INVALID_LOGIN)
    if needs_rehash(user):  # made before BCRYPT_LOG_ROUNDS was raised: made anew at that cost
        user.password_hash = data["password"]
    return user


def check_current_password(user: User, password: str) -> None:
    """Inside the caller's guessing limit: counted before the check, 429 once used up."""
    with guessing((reauth_limit, user_key(), None)):
        if not user.authenticate(password):
            abort(403, "The current password is incorrect.")


def accept_code(user_id: int, code: str, recovery: bool = True) -> str | None:
    """What a code is, if it is right and now used: "totp" (6 digits, with TOTP on) or
    "recovery_code"; None if it is neither."""
    digits = typed_digits(code)
    factor = totp_factor(user_id)
    if factor is not None and digits is not None:
        return "totp" if accept_totp(factor, digits) else None
    if recovery and use_recovery_code(user_id, code):
        return "recovery_code"
    return None


# Wrong second factors (codes, recovery codes, passkeys) per account, from every address at
# once: with the password known, the factor is the last line, and addresses are cheap.
second_factor_limit = GuessLimit("RATELIMIT_LOGIN_ACCOUNT", "second-factor")


def second_factor_guess(user: User) -> AbstractContextManager[None]:
    """with second_factor_guess(user): check a second factor, counted as a login's password
    is (per address, per account from an address) and per account from anywhere."""
    address = client_address()
    return guessing(
        (login_address_limit, address, user.username),
        (login_account_limit, f"{address}/{name_digest(user.username)}", user.username),
        (second_factor_limit, f"user:{user.id}", None),
    )


def recovery_code_used(user: User) -> None:
    """Recorded, and the owner told: a recovery code is the last way in."""
    record_event(user, "recovery_code_used")
    notify_owner(
        user,
        "A recovery code was used",
        "One of your recovery codes was just used. It cannot be used again; "
        f"{recovery_codes_left(user.id)} are left.\n\nIf this was not you, end your other "
        "sessions (Settings, or DELETE /sessions), change your password and make new recovery "
        "codes.\n",
    )


def check_second_factor(user: User, code: str | None) -> None:
    """For a user with a second factor (POST /tokens): the code must be right, inside the
    limits, or it is the 401 that says a second factor is required."""
    if not has_second_factor(user.id):
        return
    if code is None:
        second_factor_required(user, SECOND_FACTOR_REQUIRED)
    with second_factor_guess(user):
        method = accept_code(user.id, code)
        if method is None:
            record_event_after_response(user, "mfa_failed")
            second_factor_required(user, WRONG_CODE)
    if method == "recovery_code":
        recovery_code_used(user)


def second_factor_required(user: User, message: str = SECOND_FACTOR_REQUIRED) -> NoReturn:
    refuse(401, message, mfa_required=True, methods=login_methods(user.id))


# --- changing ---


def check_new_password(user: User, password: str, field: str = "new_password") -> None:
    if problem := password_problem(password, user.username, user.email):
        raise invalid(field, problem)


def new_credentials(user: User) -> None:
    """Every session and token minted before now stops working, including any login that was
    already past its password check when this commits (it carries the old version)."""
    user.auth_version += 1


def set_password(user: User, password: str) -> None:
    """A new password ends every other way in: sessions, API tokens, reset links, and logins
    already under way. The caller's own session (renewed) or bearer token stays."""
    user.password_hash = password
    new_credentials(user)
    mine = g.get("user") is not None and g.user.id == user.id
    end_sessions(user, keep=current_session_id() if mine else None)
    token = g.get("token") if mine else None
    end_tokens(user, keep=token.id if token is not None else None)
    if token is not None:
        token.auth_version = user.auth_version
    end_link_tokens(user, "password_reset")
    notify_owner(
        user,
        "Your password was changed",
        "The password of your account was just changed, and every other session and API token "
        "was ended.\n\nIf this was not you, reset your password at once and contact support.\n",
    )
