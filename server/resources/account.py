"""Your account: profile, password, password reset, email verification, history, deletion."""

from flask import abort, g, request, session
from flask_restful import Resource
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from common import (
    after_response,
    caller_row,
    current_session_id,
    end_one_time_tokens,
    end_sessions,
    end_tokens,
    json_body,
    keyset_page,
    log_event,
    log_in,
    new_credentials,
    record_event,
)
from config import db, no_content
from mailer import (
    owner_notice,
    queue_email_verification,
    queue_notice,
    queue_password_reset,
    verified_owner,
)
from models import (
    OneTimeToken,
    SecurityEvent,
    User,
    events_schema,
    invalid,
    owner_dump,
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
from resources.admin import keep_an_admin
from resources.auth import taken
from security import (
    email_verification_throttle,
    password_guess,
    password_reset_throttle,
    within_limit,
)

RESET_ACCEPTED = {
    "message": "If an account has this verified address, a link to reset its password is on "
    "its way."
}
BAD_LINK = "This link is invalid, already used or expired."


def check_new_password(user, password, field="new_password"):
    if problem := password_problem(password, user.username, user.email):
        raise invalid(field, problem)


def check_current_password(user, password):
    """Inside the caller's guessing limit: counted before the check, 429 once used up."""
    with password_guess():
        if not user.authenticate(password):
            abort(403, "The current password is incorrect.")


def find_link_token(raw_token, purpose):
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


def use_up(token):
    """Delete the token; if a concurrent request already did, this one loses (single use)."""
    if db.session.execute(delete(OneTimeToken).where(OneTimeToken.id == token.id)).rowcount != 1:
        db.session.rollback()
        raise invalid("token", BAD_LINK)


def notify(user, subject, body):
    """Mail the owner, at an address they have proved is theirs (never a stranger's)."""
    if user.email and user.email_verified:
        queue_notice(user.email, subject, f"Hello {user.username},\n\n{body}")


def set_password(user, password):
    """A new password ends every other way in: sessions, API tokens, reset links, and logins
    already under way. The caller's own session (renewed) or bearer token stays."""
    user.password_hash = password
    new_credentials(user)
    mine = g.get("user") is not None and g.user.id == user.id
    end_sessions(user, keep=current_session_id() if mine else None)
    token = g.get("token") if mine else None
    end_tokens(user, keep=token.id if token is not None else None)
    if token is not None:
        token.auth_version = user.auth_version
    end_one_time_tokens(user, "password_reset")
    notify(
        user,
        "Your password was changed",
        "The password of your account was just changed, and every other session and API token "
        "was ended.\n\nIf this was not you, reset your password at once and contact support.\n",
    )


class Me(Resource):
    def get(self):
        return owner_dump.one(g.user), 200

    def patch(self):
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
            raise taken(data.get("username")) from None
        if email_changed:
            user.email_verified_at = None
            if user.email:  # the same answer whether or not someone has it: see tell_owner_of()
                tell_owner_of(user.email, user.id)
            end_one_time_tokens(user, "email_verification")
            end_one_time_tokens(user, "password_reset")  # links mailed to the old address die
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

    def delete(self):
        user = caller_row()
        check_current_password(user, password_schema.load(json_body())["password"])
        db.session.delete(user)  # the database cascades to posts, sessions, tokens, events
        keep_an_admin()  # 409 for the last active admin while other users remain
        log_event(user, "account_deleted")
        session.clear()
        db.session.commit()
        return no_content()


class MyPassword(Resource):
    def put(self):
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

    def post(self):
        """Always the same answer, after the same work: the lookup happens when mail is sent.
        Past the per-address limit for this email, nothing more is queued, silently."""
        email = password_reset_request_schema.load(json_body())["email"]
        if within_limit("RATELIMIT_PASSWORD_RESET", "reset-email", email):
            queue_password_reset(email)
            db.session.commit()
        return RESET_ACCEPTED, 202


class PasswordResetConfirm(Resource):
    def post(self):
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

    def post(self):
        if not g.user.email:
            raise invalid("email", "Add an email address first (PATCH /me).")
        if g.user.email_verified:
            raise invalid("email", "This email address is already verified.")
        queue_email_verification(caller_row())
        db.session.commit()
        return {"message": f"A confirmation link is on its way to {g.user.email}."}, 202


class EmailVerificationConfirm(Resource):
    def post(self):
        token = find_link_token(
            token_confirm_schema.load(json_body())["token"], "email_verification"
        )
        user = token.user
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
        end_one_time_tokens(user, "email_verification")
        record_event(user, "email_verified")
        release_claims(user)
        db.session.commit()
        return owner_schema.dump(user), 200


def lock_address(address):
    """Lock every account row with this address, in id order, before changing any of them:
    two confirmations of one address then run one after the other (no deadlock), and the
    second sees what the first did. (SQLite has one writer at a time anyway.)"""
    db.session.execute(
        select(User.id).where(func.lower(User.email) == address).order_by(User.id).with_for_update()
    )


def release_claims(owner):
    """Confirming an address makes it the owner's alone: other accounts that entered it without
    confirming it lose it (an unverified claim never blocks anyone), and are told, at it."""
    others = db.session.execute(
        update(User)
        .where(
            func.lower(User.email) == owner.email,
            User.id != owner.id,
            User.email_verified_at.is_(None),
        )
        .values(email=None)
        .returning(User.id, User.username)
    ).all()
    for other in others:
        end_one_time_tokens(other, "email_verification")
        record_event(other, "email_removed")
        queue_notice(
            owner.email,
            "An unconfirmed use of this address was removed",
            f"The account {other.username} had entered this email address but never confirmed "
            f"it. The account {owner.username} has now confirmed it, so it was removed from "
            f"{other.username}.\n\nIf {other.username} is yours, log in and add an address "
            "you can confirm.\n",
        )


def tell_owner_of(address, user_id):
    """Someone set an address another account has confirmed: its owner may hear of it, after
    the response (so the answer takes the same time either way) and at most
    RATELIMIT_EMAIL_VERIFICATION times per address (so it cannot flood their inbox)."""

    def write(origin):
        owner = verified_owner(address, user_id)
        if owner is not None and (notice := owner_notice(owner)) is not None:
            queue_notice(*notice)
            db.session.commit()

    after_response(write)


class SecurityEvents(Resource):
    def get(self):
        args = page_query_schema.load(request.args)
        query = select(SecurityEvent).where(SecurityEvent.user_id == g.user.id)
        events, headers = keyset_page(query, SecurityEvent.id, args, "security_events")
        return events_schema.dump(events), 200, headers
