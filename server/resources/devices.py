"""See and end your sessions; create, list and revoke API tokens."""

from typing import Any

from flask import Response, abort, g, session
from flask_restful import Resource
from sqlalchemy import func, select

from bounds import MAX_PER_USER
from caller import current_session_id
from config import db
from credentials import check_credentials, check_second_factor
from errors import invalid
from events import record_event
from inputs import json_body
from jsonapp import no_content
from models import ApiToken, UserSession, utcnow
from openapi import link, operation
from schemas import (
    NewTokenSchema,
    SessionSchema,
    TokenRequestSchema,
    TokenSchema,
    new_token_schema,
    sessions_schema,
    token_request_schema,
    tokens_schema,
)
from sessions import end_sessions
from tokens import create_api_token

TAG = "Sessions and tokens"


class SessionList(Resource):
    @operation("listSessions", "Your live sessions", (200, SessionSchema(many=True)), tag=TAG)
    def get(self) -> tuple[Any, int]:
        """The caller's live sessions, the most recently used first (at most MAX_PER_USER)."""
        now, current = utcnow(), current_session_id()
        rows = db.session.scalars(
            select(UserSession)
            .where(UserSession.user_id == g.user.id, UserSession.expires_at > now)
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
            .limit(MAX_PER_USER)
        ).all()
        live = [row for row in rows if row.is_live(now)]
        shown = sessions_schema.dump(live)
        for item, row in zip(shown, live, strict=True):
            item["current"] = row.id == current
        return shown, 200

    @operation("endOtherSessions", "End every session but this one", (204, None), tag=TAG)
    def delete(self) -> Response:
        """Log out everywhere else."""
        end_sessions(g.user, keep=current_session_id())
        record_event(g.user, "session_revoked")
        db.session.commit()
        return no_content()


class SessionItem(Resource):
    @operation("endSession", "End one of your sessions", (204, None), tag=TAG)
    def delete(self, session_id: int) -> Response:
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
    @operation("listTokens", "Your API tokens (no secrets)", (200, TokenSchema(many=True)), tag=TAG)
    def get(self) -> tuple[Any, int]:
        tokens = db.session.scalars(
            select(ApiToken).where(ApiToken.user_id == g.user.id).order_by(ApiToken.id.desc())
        ).all()
        return tokens_schema.dump(tokens), 200

    @operation(
        "createToken",
        "Create an API token with your username and password (shown once)",
        (201, NewTokenSchema),
        body=TokenRequestSchema,
        errors=(401,),
        links={"RevokeToken": link("revokeToken", token_id="$response.body#/id")},  # noqa: S106
        tag=TAG,
    )
    def post(self) -> tuple[Any, int]:
        data = token_request_schema.load(json_body())
        user = check_credentials(data)
        check_second_factor(user, data.get("code"))
        count = db.session.scalar(select(func.count()).where(ApiToken.user_id == user.id)) or 0
        if count >= MAX_PER_USER:
            raise invalid("name", f"You have {count} tokens; revoke some before adding more.")
        token, secret = create_api_token(user, data["name"], data["expires_in_days"], utcnow())
        record_event(user, "token_created")
        db.session.commit()
        return new_token_schema.dump({**token.__dict__, "token": secret}), 201


class TokenItem(Resource):
    @operation("revokeToken", "Revoke an API token", (204, None), tag=TAG)
    def delete(self, token_id: int) -> Response:
        token = db.session.scalar(
            select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == g.user.id)
        )
        if token is None:
            abort(404, "Token not found.")
        db.session.delete(token)
        record_event(g.user, "token_revoked")
        db.session.commit()
        return no_content()
