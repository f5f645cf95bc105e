"""Server-side sessions behind Flask's SessionInterface; `session["user_id"]` reads as usual.

The cookie carries only a random 256-bit key; the database keeps its SHA-256. Logging out deletes
the row, so a copied cookie stops working at once. Any change to a session's contents (a login)
issues a new key. Anonymous sessions are never written.
"""

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from flask import Flask, Request, Response, request
from flask import session as flask_session
from flask.sessions import SecureCookieSession, SessionInterface, SessionMixin
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import DBAPIError

from bounds import MAX_ID, USER_AGENT_MAX_LENGTH
from config import db
from models import Caller, SessionLifetime, User, UserSession, utcnow
from queries import PreparedSelect
from routing import without_credentials

KEY_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
STORED_KEYS = {"user_id", "_permanent"}  # _permanent is Flask's flag behind session.permanent


@dataclass(slots=True)
class SessionRecord(SessionLifetime):
    """The session row's columns the store needs, and its user as a Caller: plain values from
    one Core query, not tracked ORM objects."""

    user: Caller
    id: int
    remember: bool
    last_seen_at: datetime
    expires_at: datetime
    auth_version: int
    authenticated_at: datetime

    @property
    def user_id(self) -> int:
        return self.user.id


# Every request with a cookie runs it: prepared once, run without the ORM session's or a Core
# connection's per-call bookkeeping (queries.py).
SESSION_BY_KEY = PreparedSelect(
    select(
        *Caller.COLUMNS,
        UserSession.id,
        UserSession.remember,
        UserSession.last_seen_at,
        UserSession.expires_at,
        UserSession.auth_version,
        UserSession.authenticated_at,
    )
    .join(UserSession, UserSession.user_id == User.id)
    .where(UserSession.key_hash == bindparam("key_hash"))
)
USER_FIELDS = len(Caller.COLUMNS)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ServerSession(SecureCookieSession):
    """A dict of the session's contents, plus the row it came from (None for a new session)."""

    def __init__(
        self,
        initial: Mapping[str, Any] | None = None,
        row: SessionRecord | None = None,
        stale: bool = False,
        failure: DBAPIError | None = None,
    ) -> None:
        super().__init__(initial)
        self.row = row
        self.stale = stale  # the request sent a cookie that no longer names a live session
        self.failure = failure  # the lookup's database error, raised again by raise_failure()


def raise_failure() -> None:
    """before_request: a session lookup that hit a database error fails the request here, in
    Flask's error handling (a 503), rather than in open_session, where Flask has no session to
    finish the response with."""
    failure = getattr(flask_session, "failure", None)
    if failure is not None:
        raise failure


class ServerSessionInterface(SessionInterface):
    session_class = ServerSession

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        if without_credentials(request.path):  # probes answer whatever the database does
            return ServerSession()
        key = request.cookies.get(self.get_cookie_name(app))
        if key is None:
            return ServerSession()
        found = None
        if KEY_RE.fullmatch(key):
            try:
                found = SESSION_BY_KEY.first(key_hash=hash_key(key))
            except DBAPIError as e:
                return ServerSession(failure=e)
        row = None
        if found is not None:
            row = SessionRecord(Caller(*found[:USER_FIELDS]), *found[USER_FIELDS:])
        if row is None or not row.is_live(utcnow()):
            return ServerSession(row=row, stale=True)
        return ServerSession({"user_id": row.user_id, "_permanent": row.remember}, row=row)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        session = cast(ServerSession, session)  # as open_session() made it
        if session is None or session.failure is not None:
            return  # nothing was read, so there is nothing to write
        if session.accessed and "Cookie" not in response.headers.get("Vary", ""):
            response.vary.add("Cookie")
        if session.keys() - STORED_KEYS:
            raise RuntimeError(f"the session store keeps only {sorted(STORED_KEYS)}")
        row: SessionRecord | UserSession | None
        row, now = session.row, utcnow()
        if not session.get("user_id"):  # logged out, expired, or never logged in
            if row is not None:
                self._delete(row)
                db.session.commit()
            if row is not None or session.stale:
                self._delete_cookie(app, response)
        elif row is None or session.modified or session.stale:
            if row is not None:
                self._delete(row)  # a login on a live session: the old key dies
            user = self._user(session["user_id"])
            if user is None:  # names no user (deleted meanwhile, or set by hand): logged out
                db.session.commit()
                if row is not None or session.stale:
                    self._delete_cookie(app, response)
                return
            key = secrets.token_urlsafe(32)
            row = self._new_row(app, session, user, key, now)
            db.session.add(row)
            db.session.commit()
            self._set_cookie(app, response, key, row.expires_at if row.remember else None)
        elif now - row.last_seen_at >= app.config["SESSION_TOUCH_INTERVAL"]:
            # At most one write a minute per session; by id, so a row deleted meanwhile (a
            # logout elsewhere) costs nothing rather than a StaleDataError.
            db.session.execute(
                update(UserSession).where(UserSession.id == row.id).values(last_seen_at=now)
            )
            db.session.commit()

    def _delete(self, row: SessionRecord | UserSession) -> None:
        """By id, so it also holds when the row is already gone (a deleted account's cascade)."""
        db.session.execute(delete(UserSession).where(UserSession.id == row.id))

    def _user(self, user_id: object) -> User | None:
        """The User a session is being started for (loaded by the login: no query), or None
        when user_id names no user, as `session["user_id"] = 999` in a test may."""
        if type(user_id) is not int or not 1 <= user_id <= MAX_ID:
            return None
        return db.session.get(User, user_id)

    def _new_row(
        self, app: Flask, session: SessionMixin, user: User, key: str, now: datetime
    ) -> UserSession:
        lifetime = app.config[
            "SESSION_REMEMBER_LIFETIME" if session.permanent else "SESSION_LIFETIME"
        ]
        return UserSession(
            auth_version=user.auth_version,  # as read before the password was checked
            key_hash=hash_key(key),
            user_id=user.id,
            remember=session.permanent,
            created_at=now,
            last_seen_at=now,
            authenticated_at=now,  # a new session is a login (or a sign-up): it just proved it
            expires_at=now + lifetime,
            ip=request.remote_addr,
            user_agent=request.user_agent.string[:USER_AGENT_MAX_LENGTH] or None,
        )

    def _cookie_options(self, app: Flask) -> dict[str, Any]:
        return {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "httponly": self.get_cookie_httponly(app),
            "samesite": self.get_cookie_samesite(app),
        }

    def _set_cookie(
        self, app: Flask, response: Response, key: str, expires: datetime | None
    ) -> None:
        response.set_cookie(
            self.get_cookie_name(app), key, expires=expires, **self._cookie_options(app)
        )

    def _delete_cookie(self, app: Flask, response: Response) -> None:
        response.delete_cookie(self.get_cookie_name(app), **self._cookie_options(app))


def log_in(user: User, remember: bool = False) -> None:
    """Start a fresh session for user: the session store issues a new id for it."""
    flask_session.clear()
    flask_session["user_id"] = user.id
    flask_session.permanent = remember


def end_sessions(user: User | Caller, keep: int | None = None) -> None:
    """Delete the user's sessions (all but `keep`, a session id)."""
    query = delete(UserSession).where(UserSession.user_id == user.id)
    if keep is not None:
        query = query.where(UserSession.id != keep)
    db.session.execute(query)
