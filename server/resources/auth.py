"""Sign up, log in, check the session, log out: the seed lesson's routes."""

from flask import abort, g, session
from flask_restful import Resource
from sqlalchemy.exc import IntegrityError

from common import find_login_user, json_body, log_in, record_event, record_event_after_response
from config import db, no_content
from mailer import queue_email_verification
from models import User, invalid, login_schema, owner_dump, owner_schema, signup_schema
from passwords import needs_rehash, password_matches
from security import login_guess, signup_throttle

INVALID_LOGIN = "Invalid username or password."


def taken(username):
    """After the unique index refused a write: the username was taken. (Addresses never clash
    here: only a verified address is unique, and a new or changed one is unverified.)"""
    return invalid("username", "That username is taken.")


def check_credentials(data):
    """The user named by a login, or the one generic 401 (the same bcrypt work either way).
    Every route that checks a login's password comes through here, inside the login limits."""
    with login_guess(data["username"]):  # counted before the check: 429 once used up
        user = find_login_user(data["username"])
        if not password_matches(user, data["password"]) or user.disabled:
            if user is not None:
                record_event_after_response(user, "login_failed")
            abort(401, INVALID_LOGIN)
    if needs_rehash(user):  # made before BCRYPT_LOG_ROUNDS was raised: made anew at that cost
        user.password_hash = data["password"]
    return user


class Signup(Resource):
    decorators = [signup_throttle]

    def post(self):
        data = signup_schema.load(json_body())
        user = User(username=data["username"], password_hash=data["password"], email=data["email"])
        db.session.add(user)
        try:
            db.session.flush()  # the unique indexes on lower(username), lower(email) decide races
        except IntegrityError:
            db.session.rollback()
            raise taken(data["username"]) from None
        record_event(user, "signup")
        if user.email:
            queue_email_verification(user)
        db.session.commit()
        log_in(user)
        return owner_schema.dump(user), 201


class Login(Resource):
    def post(self):
        data = login_schema.load(json_body())
        user = check_credentials(data)
        log_in(user, data["remember"])
        record_event(user, "login")
        db.session.commit()
        return owner_schema.dump(user), 200


class Logout(Resource):
    def delete(self):
        """Ends this session; for a bearer token, revokes that token."""
        if g.token is not None:
            db.session.delete(g.token)
        session.clear()
        record_event(g.user, "logout")
        db.session.commit()
        return no_content()


class CheckSession(Resource):
    def get(self):
        return owner_dump.one(g.user), 200
