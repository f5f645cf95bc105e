"""Logins waiting for their second factor. POST /login with the right password, for a user with
a second factor, starts one: a row, and a cookie holding its random key (only the key's SHA-256
is stored), good for PENDING_LIFETIME and PENDING_MAX_FAILURES wrong codes. /check_session
stays 401 meanwhile. The second factor ends it and starts the session, under a key of its own."""

import hashlib
import secrets
from datetime import timedelta

from flask import Response, abort, after_this_request, current_app, request
from sqlalchemy import delete, select, update
from sqlalchemy.orm import joinedload

from config import db
from database import rows_affected
from events import record_event
from known_devices import note_device
from models import PendingLogin, User, utcnow
from sessions import log_in

PENDING_LIFETIME = timedelta(minutes=5)
PENDING_MAX_FAILURES = 5
NO_PENDING_LOGIN = "No login is waiting for a second factor: log in with your password first."
KEY_LENGTH = 43  # secrets.token_urlsafe(32)


def cookie_name() -> str:
    """__Host- with Secure cookies, like the session's."""
    secure = current_app.config["SESSION_COOKIE_SECURE"]
    return "__Host-pending_login" if secure else "pending_login"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def start_pending_login(user: User, remember: bool) -> None:
    """A pending login for user; its cookie goes out with this response."""
    key, now = secrets.token_urlsafe(32), utcnow()
    db.session.add(
        PendingLogin(
            key_hash=hash_key(key),
            user_id=user.id,
            remember=remember,
            created_at=now,
            expires_at=now + PENDING_LIFETIME,
            auth_version=user.auth_version,  # as read before the password was checked
        )
    )

    @after_this_request
    def set_cookie(response: Response) -> Response:
        config = current_app.config
        response.set_cookie(
            cookie_name(),
            key,
            max_age=int(PENDING_LIFETIME.total_seconds()),
            path="/",
            secure=config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite=config["SESSION_COOKIE_SAMESITE"],
        )
        return response


def pending_login() -> PendingLogin | None:
    """The request's live pending login: not expired, not failed too often, and no credential
    event (a password change, the account disabled) since its password was checked."""
    key = request.cookies.get(cookie_name(), "")
    if len(key) != KEY_LENGTH:
        return None
    pending = db.session.scalar(
        select(PendingLogin)
        .options(joinedload(PendingLogin.user))
        .where(PendingLogin.key_hash == hash_key(key))
    )
    if pending is None:
        return None
    user = pending.user
    if (
        pending.expires_at <= utcnow()
        or pending.failures >= PENDING_MAX_FAILURES
        or pending.auth_version != user.auth_version
        or user.disabled
    ):
        return None
    return pending


def reserve_attempt(pending: PendingLogin) -> None:
    """Count this attempt at the second factor before it is checked, committed at once: of
    attempts arriving together, at most PENDING_MAX_FAILURES are ever checked (a right one then
    ends the login anyway). 401 once they are used up or the login expired."""
    attempt = (
        update(PendingLogin)
        .where(
            PendingLogin.id == pending.id,
            PendingLogin.failures < PENDING_MAX_FAILURES,
            PendingLogin.expires_at > utcnow(),
        )
        .values(failures=PendingLogin.failures + 1)
    )
    reserved = rows_affected(db.session, attempt) == 1
    db.session.commit()
    if not reserved:
        abort(401, NO_PENDING_LOGIN)


def end_pending_login(pending: PendingLogin) -> bool:
    """The second factor was right: the row and its cookie go. False if a concurrent request
    ended it first (it alone may start the session)."""
    ended = rows_affected(db.session, delete(PendingLogin).where(PendingLogin.id == pending.id))

    @after_this_request
    def delete_cookie(response: Response) -> Response:
        response.delete_cookie(
            cookie_name(),
            path="/",
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            httponly=True,
        )
        return response

    return ended == 1


def complete(pending: PendingLogin) -> User:
    """The second factor was right: the pending login becomes a session (under a new key) and
    a `login` in the history. 401 if a concurrent request completed it first."""
    if not end_pending_login(pending):
        abort(401, NO_PENDING_LOGIN)
    log_in(pending.user, pending.remember)
    record_event(pending.user, "login")
    note_device(pending.user)
    return pending.user


def current_pending_login() -> PendingLogin:
    """The request's pending login, or 401."""
    pending = pending_login()
    if pending is None:
        abort(401, NO_PENDING_LOGIN)
    return pending
