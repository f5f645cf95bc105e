"""Proof that it is still you: a session (or API token) is recent for REAUTHENTICATION_WINDOW
after it last proved who it is (a login, a sign-up, POST /reauthenticate). The guard asks for it
on the routes the route table marks `recent`, and on `sensitive` ones for a user with a second
factor."""

from datetime import datetime
from typing import cast

from flask import current_app, g, session
from sqlalchemy import update

from caller import current_session_id
from config import db
from errors import refuse
from mfa import reauthentication_methods
from models import ApiToken, UserSession, utcnow
from sessions import ServerSession

CONFIRM = "Please confirm it is you."


def authenticated_at() -> datetime | None:
    """When the request's credential last proved who it is."""
    if g.get("token") is not None:
        token_time: datetime = g.token.authenticated_at
        return token_time
    row = cast(ServerSession, session).row
    return row.authenticated_at if row is not None else None


def is_recent() -> bool:
    at = authenticated_at()
    return at is not None and utcnow() - at < current_app.config["REAUTHENTICATION_WINDOW"]


def require_recent() -> None:
    """403 {"reauthentication_required": true, "methods": [...]} unless recent."""
    if not is_recent():
        refuse(
            403,
            CONFIRM,
            reauthentication_required=True,
            methods=reauthentication_methods(g.user.id),
        )


def mark_recent() -> None:
    """The request's credential has just proved who it is."""
    now = utcnow()
    if g.get("token") is not None:
        db.session.execute(
            update(ApiToken).where(ApiToken.id == g.token.id).values(authenticated_at=now)
        )
        return
    session_id = current_session_id()
    if session_id is not None:
        statement = update(UserSession).where(UserSession.id == session_id)
        db.session.execute(statement.values(authenticated_at=now))
