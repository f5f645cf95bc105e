"""Who is calling: the login guard (app.py) puts a Caller in g.user, and the bearer token, if
that is how they came, in g.token."""

from flask import abort, g, session

from config import db
from models import User


def caller_row() -> User:
    """The caller's User row, for a Resource that changes the user or checks their password
    (g.user is a read-only Caller); 401 if the account was deleted since the session was read."""
    user = db.session.get(User, g.user.id)
    if user is None:
        abort(401)
    return user


def current_session_id() -> int | None:
    """The id of the session the request came with (None for a bearer token, or none)."""
    row = getattr(session, "row", None)
    return row.id if row is not None and g.get("token") is None else None
