"""Sign up, log in, check the session, log out: the seed lesson's routes."""

from typing import Any

from flask import Response, abort, g, session
from flask_restful import Resource
from sqlalchemy.exc import IntegrityError

from caller import caller_row
from config import db
from credentials import (
    WRONG_CODE,
    accept_code,
    check_credentials,
    reauth_limit,
    recovery_code_used,
    second_factor_guess,
    second_factor_required,
    username_taken,
)
from events import record_event, record_event_after_response
from inputs import json_body
from jsonapp import no_content
from known_devices import note_device
from mailer import queue_email_verification
from mfa import has_second_factor
from models import User
from openapi import operation
from pending_logins import complete, current_pending_login, reserve_attempt, start_pending_login
from ratelimit import guessing
from schemas import (
    LoginSchema,
    OwnerSchema,
    ReauthenticationSchema,
    SecondFactorSchema,
    SignupSchema,
    login_schema,
    owner_dump,
    owner_schema,
    reauthentication_schema,
    second_factor_schema,
    signup_schema,
)
from sessions import log_in
from stepup import mark_recent
from throttles import signup_throttle, user_key

TAG = "Authentication"
Reply = tuple[dict[str, Any], int]


class Signup(Resource):
    decorators = [signup_throttle]

    @operation(
        "signUp", "Create an account and log in", (201, OwnerSchema), body=SignupSchema, tag=TAG
    )
    def post(self) -> Reply:
        data = signup_schema.load(json_body())
        user = User(username=data["username"], password_hash=data["password"], email=data["email"])
        db.session.add(user)
        try:
            db.session.flush()  # the unique indexes on lower(username), lower(email) decide races
        except IntegrityError:
            db.session.rollback()
            raise username_taken() from None
        record_event(user, "signup")
        note_device(user, first=True)
        if user.email:
            queue_email_verification(user)
        db.session.commit()
        log_in(user)
        return owner_schema.dump(user), 201


class Login(Resource):
    @operation(
        "logIn",
        "Log in (username or verified email)",
        (200, OwnerSchema),
        body=LoginSchema,
        errors=(401,),
        tag=TAG,
    )
    def post(self) -> Reply:
        data = login_schema.load(json_body())
        user = check_credentials(data)
        if has_second_factor(user.id):  # the password was right: now the second factor
            start_pending_login(user, data["remember"])
            db.session.commit()
            second_factor_required(user)
        log_in(user, data["remember"])
        record_event(user, "login")
        note_device(user)
        db.session.commit()
        return owner_schema.dump(user), 200


class LoginSecondFactor(Resource):
    @operation(
        "logInSecondFactor",
        "The second step of a login: a code from the authenticator app, or a recovery code",
        (200, OwnerSchema),
        body=SecondFactorSchema,
        errors=(401,),
        refusal="A wrong code, or no login waiting for a second factor",
        tag=TAG,
    )
    def post(self) -> Reply:
        """The pending login (its cookie, from POST /login) becomes a session, under a new key.
        Wrong codes count against the login limits; the pending login ends after five."""
        data = second_factor_schema.load(json_body())
        pending = current_pending_login()
        user = pending.user
        with second_factor_guess(user):  # counted before the check: 429 once used up
            reserve_attempt(pending)
            if "code" in data:
                method = accept_code(user.id, data["code"], recovery=False)
            else:
                method = accept_code(user.id, data["recovery_code"])
            if method is None:
                record_event_after_response(user, "mfa_failed")
                abort(401, WRONG_CODE)
        complete(pending)
        if method == "recovery_code":
            recovery_code_used(user)
        db.session.commit()
        return owner_schema.dump(user), 200


class Reauthenticate(Resource):
    @operation(
        "reauthenticate",
        "Confirm it is you: the session counts as recent for REAUTHENTICATION_WINDOW",
        (204, None),
        body=ReauthenticationSchema,
        errors=(401,),
        refusal="A wrong password or code",
        tag=TAG,
    )
    def post(self) -> Response:
        data = reauthentication_schema.load(json_body())
        user = caller_row()
        with guessing((reauth_limit, user_key(), None)):  # as a wrong current password
            if "password" in data:
                right = user.authenticate(data["password"])
            else:
                right = accept_code(user.id, data["code"], recovery=False) is not None
            if not right:
                if "code" in data:
                    record_event_after_response(user, "mfa_failed")
                abort(401, "That is not right.")
        mark_recent()
        record_event(user, "reauthenticated")
        db.session.commit()
        return no_content()


class Logout(Resource):
    @operation(
        "logOut", "Log out: delete this session (or revoke this bearer token)", (204, None), tag=TAG
    )
    def delete(self) -> Response:
        """Ends this session; for a bearer token, revokes that token."""
        if g.token is not None:
            db.session.delete(g.token)
        session.clear()
        record_event(g.user, "logout")
        db.session.commit()
        return no_content()


class CheckSession(Resource):
    @operation("checkSession", "Who is logged in", (200, OwnerSchema), tag=TAG)
    def get(self) -> Reply:
        return owner_dump.one(g.user), 200
