"""The database keeps an active administrator (migration 0005's triggers): turning its refusal
into a 409 for the API and a clear message for the command line."""

from flask import abort
from sqlalchemy.exc import IntegrityError

from config import db

LAST_ADMIN = "That would leave no active administrator. Make another user an admin first."


def leaves_no_admin(error: Exception) -> bool:
    """Is this the database's refusal to remove the last active admin (migration 0005)?"""
    return isinstance(error, IntegrityError) and "users_last_admin" in str(error.orig)


def keep_an_admin() -> None:
    """Write the pending change to the user now, before anything else: the database refuses one
    that would leave no active admin, whatever runs at the same moment; that is a 409."""
    try:
        db.session.flush()
    except IntegrityError as e:
        db.session.rollback()
        if not leaves_no_admin(e):
            raise
        abort(409, LAST_ADMIN)
