"""Sign up, log in, check the session, log out: the seed lesson's routes."""

from typing import Any

from flask import Response, g, session
from flask_restful import Resource
from sqlalchemy.exc import IntegrityError

from config import db
from credentials import check_credentials, username_taken
from events import record_event
from inputs import json_body
from jsonapp import no_content
from mailer import queue_email_verification
from models import User
from openapi import operation
from schemas import (
    LoginSchema,
    OwnerSchema,
    SignupSchema,
    login_schema,
    owner_dump,
    owner_schema,
    signup_schema,
)
from sessions import log_in
from throttles import signup_throttle

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
        log_in(user, data["remember"])
        record_event(user, "login")
        db.session.commit()
        return owner_schema.dump(user), 200


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
