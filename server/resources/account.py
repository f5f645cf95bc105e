"""Your account: profile, password, password reset, email verification, history, deletion."""

from typing import Any

from flask import Response, g, request, session
from flask_restful import Resource
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from admins import keep_an_admin
from caller import caller_row, current_session_id
from config import db
from credentials import check_current_password, check_new_password, set_password, username_taken
from errors import invalid
from events import Origin, after_response, log_event, record_event
from inputs import json_body
from jsonapp import no_content
from mailer import (
    owner_notice,
    queue_email_verification,
    queue_notice,
    queue_password_reset,
    verified_owner,
)
from models import SecurityEvent, User, utcnow
from openapi import PAGED, operation
from pages import keyset_page
from schemas import (
    MessageSchema,
    OwnerSchema,
    PageQuerySchema,
    PasswordChangeSchema,
    PasswordResetConfirmSchema,
    PasswordResetRequestSchema,
    PasswordSchema,
    ProfileSchema,
    SecurityEventSchema,
    TokenConfirmSchema,
    events_schema,
    owner_dump,
    owner_schema,
    page_query_schema,
    password_change_schema,
    password_reset_confirm_schema,
    password_reset_request_schema,
    password_schema,
    profile_schema,
    token_confirm_schema,
)
from sessions import log_in
from throttles import email_verification_throttle, password_reset_throttle, within_limit
from tokens import BAD_LINK, end_link_tokens, find_link_token, use_up

TAG = "Account"
Reply = tuple[dict[str, Any], int]
RESET_ACCEPTED = {
    "message": "If an account has this verified address, a link to reset its password is on "
    "its way."
}


class Me(Resource):
    @operation("getMe", "Your account", (200, OwnerSchema), tag=TAG)
    def get(self) -> Reply:
        return owner_dump.one(g.user), 200

    @operation(
        "updateMe", "Change username or email", (200, OwnerSchema), body=ProfileSchema, tag=TAG
    )
    def patch(self) -> Reply:
        user = caller_row()
        data = profile_schema.load(json_body())
        old_email, old_verified = user.email, user.email_verified
        email_changed = "email" in data and data["email"] != old_email
        if email_changed:  # the way to password resets: as guarded as the password itself
            if "current_password" not in data:
                raise invalid("current_password", "Needed to change the email address.")
            check_current_password(user, data["current_password"])
        if "username" in data:
            user.username = data["username"]
        if email_changed:
            user.email = data["email"]
        try:
            db.session.flush()  # first: the unique index on usernames decides races
        except IntegrityError:
            db.session.rollback()
            raise username_taken() from None
        if email_changed:
            user.email_verified_at = None
            if user.email:  # the same answer whether or not someone has it: see tell_owner_of()
                tell_owner_of(user.email, user.id)
            end_link_tokens(user, "email_verification")
            end_link_tokens(user, "password_reset")  # links mailed to the old address die
            record_event(user, "email_changed")
            if old_email and old_verified:
                queue_notice(
                    old_email,
                    "Your email address was changed",
                    f"Hello {user.username},\n\nThe email address of your account was changed "
                    f"from this one to {user.email or 'none'}.\n\nIf this was not you, log in, "
                    "change your password and set your address back.\n",
                )
        db.session.commit()
        return owner_schema.dump(user), 200

    @operation(
        "deleteMe",
        "Delete your account (needs the password)",
        (204, None),
        body=PasswordSchema,
        errors=(409,),  # the last active admin, while other accounts exist
        tag=TAG,
    )
    def delete(self) -> Response:
        user = caller_row()
        check_current_password(user, password_schema.load(json_body())["password"])
        db.session.delete(user)  # the database cascades to posts, sessions, tokens, events
        keep_an_admin()  # 409 for the last active admin while other users remain
        log_event(user, "account_deleted")
        session.clear()
        db.session.commit()
        return no_content()


class MyPassword(Resource):
    @operation(
        "changePassword",
        "Change your password",
        (204, None),
        body=PasswordChangeSchema,
        tag=TAG,
    )
    def put(self) -> Response:
        data = password_change_schema.load(json_body())
        user = caller_row()
        check_current_password(user, data["current_password"])
        check_new_password(user, data["new_password"])
        set_password(user, data["new_password"])
        record_event(user, "password_changed")
        db.session.commit()
        if current_session_id() is not None:
            log_in(user, remember=session.permanent)  # the current session gets a new id
        return no_content()


class PasswordReset(Resource):
    decorators = [password_reset_throttle]

    @operation(
        "requestPasswordReset",
        "Ask for a password-reset link (same answer for any address)",
        (202, MessageSchema),
        body=PasswordResetRequestSchema,
        tag=TAG,
    )
    def post(self) -> Reply:
        """Always the same answer, after the same work: the lookup happens when mail is sent.
        Past the per-address limit for this email, nothing more is queued, silently."""
        email = password_reset_request_schema.load(json_body())["email"]
        if within_limit("RATELIMIT_PASSWORD_RESET", "reset-email", email):
            queue_password_reset(email)
            db.session.commit()
        return RESET_ACCEPTED, 202


class PasswordResetConfirm(Resource):
    @operation(
        "confirmPasswordReset",
        "Set a new password with a reset link's token",
        (204, None),
        body=PasswordResetConfirmSchema,
        tag=TAG,
    )
    def post(self) -> Response:
        data = password_reset_confirm_schema.load(json_body())
        token = find_link_token(data["token"], "password_reset")
        user = token.user
        check_new_password(user, data["new_password"])
        use_up(token)
        set_password(user, data["new_password"])
        record_event(user, "password_reset")
        db.session.commit()
        return no_content()


class EmailVerification(Resource):
    decorators = [email_verification_throttle]

    @operation(
        "requestEmailVerification",
        "Mail a link to confirm your email address",
        (202, MessageSchema),
        errors=(422,),  # no address, or one already verified
        tag=TAG,
    )
    def post(self) -> Reply:
        if not g.user.email:
            raise invalid("email", "Add an email address first (PATCH /me).")
        if g.user.email_verified:
            raise invalid("email", "This email address is already verified.")
        queue_email_verification(caller_row())
        db.session.commit()
        return {"message": f"A confirmation link is on its way to {g.user.email}."}, 202


class EmailVerificationConfirm(Resource):
    @operation(
        "confirmEmailVerification",
        "Confirm an email address with a link's token",
        (200, OwnerSchema),
        body=TokenConfirmSchema,
        tag=TAG,
    )
    def post(self) -> Reply:
        token = find_link_token(
            token_confirm_schema.load(json_body())["token"], "email_verification"
        )
        user = token.user
        assert token.email is not None  # a verification token names the address it vouches for
        lock_address(token.email)
        db.session.refresh(user)
        if user.email != token.email:  # a confirmation that committed meanwhile took it away
            raise invalid("token", BAD_LINK)
        use_up(token)
        user.email_verified_at = utcnow()
        try:
            db.session.flush()  # now, before anything else: the unique index on verified
        except IntegrityError:  # addresses decides whether it is this account's to confirm
            db.session.rollback()
            raise invalid("token", "Another account confirmed this address first.") from None
        end_link_tokens(user, "email_verification")
        record_event(user, "email_verified")
        release_claims(user)
        db.session.commit()
        return owner_schema.dump(user), 200


def lock_address(address: str) -> None:
    """Lock every account row with this address, in id order, before changing any of them:
    two confirmations of one address then run one after the other (no deadlock), and the
    second sees what the first did. (SQLite has one writer at a time anyway.)"""
    db.session.execute(
        select(User.id).where(func.lower(User.email) == address).order_by(User.id).with_for_update()
    )


def release_claims(owner: User) -> None:
    """Confirming an address makes it the owner's alone: other accounts that entered it without
    confirming it lose it (an unverified claim never blocks anyone), and are told, at it."""
    assert owner.email is not None  # the address just confirmed
    others = db.session.scalars(
        update(User)
        .where(
            func.lower(User.email) == owner.email,
            User.id != owner.id,
            User.email_verified_at.is_(None),
        )
        .values(email=None)
        .returning(User)
    ).all()
    for other in others:
        end_link_tokens(other, "email_verification")
        record_event(other, "email_removed")
        queue_notice(
            owner.email,
            "An unconfirmed use of this address was removed",
            f"The account {other.username} had entered this email address but never confirmed "
            f"it. The account {owner.username} has now confirmed it, so it was removed from "
            f"{other.username}.\n\nIf {other.username} is yours, log in and add an address "
            "you can confirm.\n",
        )


def tell_owner_of(address: str, user_id: int) -> None:
    """Someone set an address another account has confirmed: its owner may hear of it, after
    the response (so the answer takes the same time either way) and at most
    RATELIMIT_EMAIL_VERIFICATION times per address (so it cannot flood their inbox)."""

    def write(origin: Origin) -> None:
        owner = verified_owner(address, user_id)
        if owner is not None and (notice := owner_notice(owner)) is not None:
            queue_notice(*notice)
            db.session.commit()

    after_response(write)


class SecurityEvents(Resource):
    @operation(
        "listSecurityEvents",
        "Your security history, newest first",
        (200, SecurityEventSchema(many=True)),
        query=PageQuerySchema,
        headers=PAGED,
        tag=TAG,
    )
    def get(self) -> tuple[Any, int, dict[str, str]]:
        args = page_query_schema.load(request.args)
        query = select(SecurityEvent).where(SecurityEvent.user_id == g.user.id)
        events, headers = keyset_page(query, SecurityEvent.id, args, "security_events")
        return events_schema.dump(events), 200, headers
