"""See and end your sessions; create, list and revoke API tokens."""

import secrets
from datetime import timedelta

from flask import abort, g, session
from flask_restful import Resource
from sqlalchemy import func, select

from common import current_session_id, end_sessions, json_body, record_event
from config import MAX_PER_USER, db, no_content
from models import (
    ApiToken,
    UserSession,
    invalid,
    new_token_schema,
    sessions_schema,
    sha256,
    token_request_schema,
    tokens_schema,
    utcnow,
)
from resources.auth import check_credentials


class SessionList(Resource):
    def get(self):
        """The caller's live sessions, the most recently used first (at most MAX_PER_USER)."""
        now, current = utcnow(), current_session_id()
        rows = db.session.scalars(
            select(UserSession)
            .where(UserSession.user_id == g.user.id, UserSession.expires_at > now)
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
            .limit(MAX_PER_USER)
        ).all()
        live = [row for row in rows if row.is_live(now)]
        for row in live:
            row.current = row.id == current
        return sessions_schema.dump(live), 200

    def delete(self):
        """Log out everywhere else."""
        end_sessions(g.user, keep=current_session_id())
        record_event(g.user, "session_revoked")
        db.session.commit()
        return no_content()


class SessionItem(Resource):
    def delete(self, session_id):
        row = db.session.scalar(
            select(UserSession).where(
                UserSession.id == session_id, UserSession.user_id == g.user.id
            )
        )
        if row is None or not row.is_live(utcnow()):
            abort(404, "Session not found.")  # someone else's ids look exactly like missing ones
        if row.id == current_session_id():
            session.clear()  # ending the current session is logging out
        else:
            db.session.delete(row)
        record_event(g.user, "session_revoked")
        db.session.commit()
        return no_content()


class TokenList(Resource):
    def get(self):
        tokens = db.session.scalars(
            select(ApiToken).where(ApiToken.user_id == g.user.id).order_by(ApiToken.id.desc())
        ).all()
        return tokens_schema.dump(tokens), 200

    def post(self):
        data = token_request_schema.load(json_body())
        user = check_credentials(data)
        count = db.session.scalar(select(func.count()).where(ApiToken.user_id == user.id))
        if count >= MAX_PER_USER:
            raise invalid("name", f"You have {count} tokens; revoke some before adding more.")
        secret = ApiToken.PREFIX + secrets.token_urlsafe(32)  # 256 random bits
        now = utcnow()
        days = data["expires_in_days"]
        token = ApiToken(
            user_id=user.id,
            name=data["name"],
            token_hash=sha256(secret),
            hint=secret[: len(ApiToken.PREFIX) + 6],
            created_at=now,
            expires_at=now + timedelta(days=days) if days else None,
            auth_version=user.auth_version,  # as read before the password was checked
        )
        db.session.add(token)
        record_event(user, "token_created")
        db.session.commit()
        return new_token_schema.dump({**token.__dict__, "token": secret}), 201


class TokenItem(Resource):
    def delete(self, token_id):
        token = db.session.scalar(
            select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == g.user.id)
        )
        if token is None:
            abort(404, "Token not found.")
        db.session.delete(token)
        record_event(g.user, "token_revoked")
        db.session.commit()
        return no_content()
