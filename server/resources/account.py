"""Your account: profile, password, password reset, email verification, history, deletion."""

from flask import abort, g, request, session
from flask_restful import Resource
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from common import (
    current_session_id,
    end_one_time_tokens,
    end_sessions,
    end_tokens,
    json_body,
    keyset_page,
    log_event,
    log_in,
    record_event,
)
from config import db, no_content
from mailer import queue_email_verification, queue_notice, queue_password_reset
from models import (
    OneTimeToken,
    SecurityEvent,
    events_schema,
    invalid,
    owner_schema,
    page_query_schema,
    password_change_schema,
    password_reset_confirm_schema,
    password_reset_request_schema,
    password_schema,
    profile_schema,
    sha256,
    token_confirm_schema,
    utcnow,
)
from passwords import password_problem
from resources.auth import taken
from security import email_verification_throttle, password_reset_throttles, reauth_throttle

RESET_ACCEPTED = {
    "message": "If an account has this verified address, a link to reset its password is on "
    "its way."
}


def check_new_password(user, password, field="new_password"):
    if problem := password_problem(password, user.username, user.email):
        raise invalid(field, problem)


def check_current_password(password):
    if not g.user.authenticate(password):
        abort(403, "The current password is incorrect.")


def redeem(raw_token, purpose):
    """The live one-time token for purpose, or the house 422; it can be used only once."""
    token = db.session.scalar(
        select(OneTimeToken)
        .options(joinedload(OneTimeToken.user))
        .where(OneTimeToken.token_hash == sha256(raw_token), OneTimeToken.purpose == purpose)
    )
    if token is None or token.expires_at <= utcnow() or token.user.disabled:
        raise invalid("token", "This link is invalid, already used or expired.")
    return token


def set_password(user, password):
    """A new password ends every other way in: sessions, API tokens, reset links."""
    user.password_hash = password
    end_sessions(user, keep=current_session_id() if g.get("user") is user else None)
    end_tokens(user)
    end_one_time_tokens(user, "password_reset")
    if user.email:
        queue_notice(
            user.email,
            "Your password was changed",
            f"Hello {user.username},\n\nThe password of your account was just changed, and every "
            "other session and API token was ended.\n\nIf this was not you, reset your password "
            "at once and contact support.\n",
        )


class Me(Resource):
    decorators = [reauth_throttle]  # counts wrong passwords at DELETE

    def get(self):
        return owner_schema.dump(g.user), 200

    def patch(self):
        user = g.user
        data = profile_schema.load(json_body())
        old_email = user.email
        if "username" in data:
            user.username = data["username"]
        email_changed = (
            "email" in data and (data["email"] or "").lower() != (old_email or "").lower()
        )
        if "email" in data:
            user.email = data["email"]
        try:
            db.session.flush()  # first: the unique indexes decide before anything else runs
        except IntegrityError:
            db.session.rollback()
            raise taken(data.get("username"), user.id) from None
        if email_changed:
            user.email_verified_at = None
            end_one_time_tokens(user, "email_verification")
            record_event(user, "email_changed")
            if old_email:
                queue_notice(
                    old_email,
                    "Your email address was changed",
                    f"Hello {user.username},\n\nThe email address of your account was changed "
                    f"from this one to {user.email or 'none'}.\n\nIf this was not you, log in, "
                    "change your password and set your address back.\n",
                )
        db.session.commit()
        return owner_schema.dump(user), 200

    def delete(self):
        check_current_password(password_schema.load(json_body())["password"])
        log_event(g.user, "account_deleted")
        db.session.delete(g.user)  # the database cascades to posts, sessions, tokens, events
        session.clear()
        db.session.commit()
        return no_content()


class MyPassword(Resource):
    decorators = [reauth_throttle]

    def put(self):
        data = password_change_schema.load(json_body())
        check_current_password(data["current_password"])
        check_new_password(g.user, data["new_password"])
        set_password(g.user, data["new_password"])
        record_event(g.user, "password_changed")
        db.session.commit()
        if current_session_id() is not None:
            log_in(g.user, remember=session.permanent)  # the current session gets a new id
        return no_content()


class PasswordReset(Resource):
    decorators = password_reset_throttles

    def post(self):
        """Always the same answer, after the same work: the lookup happens when mail is sent."""
        queue_password_reset(password_reset_request_schema.load(json_body())["email"])
        db.session.commit()
        return RESET_ACCEPTED, 202


class PasswordResetConfirm(Resource):
    def post(self):
        data = password_reset_confirm_schema.load(json_body())
        user = redeem(data["token"], "password_reset").user
        check_new_password(user, data["new_password"])
        set_password(user, data["new_password"])
        record_event(user, "password_reset")
        db.session.commit()
        return no_content()


class EmailVerification(Resource):
    decorators = [email_verification_throttle]

    def post(self):
        if not g.user.email:
            raise invalid("email", "Add an email address first (PATCH /me).")
        if g.user.email_verified:
            raise invalid("email", "This email address is already verified.")
        queue_email_verification(g.user)
        db.session.commit()
        return {"message": f"A confirmation link is on its way to {g.user.email}."}, 202


class EmailVerificationConfirm(Resource):
    def post(self):
        token = redeem(token_confirm_schema.load(json_body())["token"], "email_verification")
        user = token.user
        if (user.email or "").lower() != (token.email or "").lower():
            raise invalid("token", "This link is invalid, already used or expired.")
        user.email_verified_at = utcnow()
        end_one_time_tokens(user, "email_verification")
        record_event(user, "email_verified")
        db.session.commit()
        return owner_schema.dump(user), 200


class SecurityEvents(Resource):
    def get(self):
        args = page_query_schema.load(request.args)
        query = select(SecurityEvent).where(SecurityEvent.user_id == g.user.id)
        events, headers = keyset_page(query, SecurityEvent.id, args, "security_events")
        return events_schema.dump(events), 200, headers
