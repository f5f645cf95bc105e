"""Tokens: API tokens (bearer secrets for scripts and apps) and link tokens (password reset,
email verification). Each is shown once; only its SHA-256 is stored."""

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import joinedload

from config import db
from database import rows_affected
from errors import invalid
from models import ApiToken, Caller, OneTimeToken, User, sha256, utcnow

BAD_LINK = "This link is invalid, already used or expired."
API_TOKEN_MAX_LENGTH = 100  # what a bearer secret may be before it is looked up
LAST_USED_EVERY = timedelta(minutes=1)  # how often a token's last use is written, at most


# --- API tokens ---


def create_api_token(
    user: User, name: str, days: int | None, now: datetime
) -> tuple[ApiToken, str]:
    """A new token for user (added to the session), and its secret, to be shown this once."""
    secret = ApiToken.PREFIX + secrets.token_urlsafe(32)  # 256 random bits
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=sha256(secret),
        hint=secret[: len(ApiToken.PREFIX) + 6],
        created_at=now,
        expires_at=now + timedelta(days=days) if days else None,
        auth_version=user.auth_version,  # as read before the password was checked
        authenticated_at=now,
    )
    db.session.add(token)
    return token, secret


def find_api_token(secret: str | None) -> ApiToken | None:
    """The live token a bearer secret names, or None; last use is written at most once a minute."""
    if not secret or not secret.startswith(ApiToken.PREFIX) or len(secret) > API_TOKEN_MAX_LENGTH:
        return None
    token = db.session.scalar(
        select(ApiToken)
        .options(joinedload(ApiToken.user))
        .where(ApiToken.token_hash == sha256(secret))
    )
    now = utcnow()
    if token is None or not token.is_live(now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
        db.session.execute(  # by id: a token revoked meanwhile is no error
            update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now)
        )
        db.session.commit()
    return token


def end_tokens(user: User | Caller, keep: int | None = None) -> None:
    """Delete the user's API tokens (all but `keep`, a token id)."""
    query = delete(ApiToken).where(ApiToken.user_id == user.id)
    if keep is not None:
        query = query.where(ApiToken.id != keep)
    db.session.execute(query)


# --- link tokens ---


def mint_link_token(user: User, purpose: str, lifetime: timedelta, email: str | None) -> str:
    """A fresh single-use token for a link mailed to `email`; only its hash is stored."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(
        OneTimeToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=sha256(token),
            email=email,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return token


def find_link_token(raw_token: str, purpose: str) -> OneTimeToken:
    """The live one-time token for purpose, with its user, or the house 422."""
    token = db.session.scalar(
        select(OneTimeToken)
        .options(joinedload(OneTimeToken.user))
        .where(OneTimeToken.token_hash == sha256(raw_token), OneTimeToken.purpose == purpose)
    )
    if token is None or token.expires_at <= utcnow() or token.user.disabled:
        raise invalid("token", BAD_LINK)
    if (token.user.email or "") != (token.email or ""):
        raise invalid("token", BAD_LINK)  # sent to an address the account no longer has
    return token


def use_up(token: OneTimeToken) -> None:
    """Delete the token; if a concurrent request already did, this one loses (single use)."""
    if rows_affected(db.session, delete(OneTimeToken).where(OneTimeToken.id == token.id)) != 1:
        db.session.rollback()
        raise invalid("token", BAD_LINK)


def end_link_tokens(user: User, purpose: str) -> None:
    db.session.execute(
        delete(OneTimeToken).where(OneTimeToken.user_id == user.id, OneTimeToken.purpose == purpose)
    )
