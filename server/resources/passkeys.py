"""Passkeys: register, list, rename and remove yours; log in with one (as the second factor
after a password, or alone, naming no one); confirm it is you with one."""

from typing import Any

from flask import Response, abort, g
from flask_restful import Resource
from sqlalchemy import select

from bounds import PASSKEYS_PER_USER
from caller import caller_row
from config import db
from credentials import (
    login_account_limit,
    login_address_limit,
    name_digest,
    reauth_limit,
    second_factor_guess,
)
from errors import invalid
from events import record_event, record_event_after_response
from inputs import json_body
from jsonapp import no_content
from known_devices import note_device
from mailer import notify_owner
from mfa import forget_recovery_codes_unless_a_factor_is_left
from models import Passkey
from openapi import operation
from passkeys import (
    PasskeyRefused,
    authenticate,
    authentication_options,
    credential_passkey,
    passkey_count,
    passkeys_of,
    register,
    registration_options,
)
from pending_logins import complete, current_pending_login, reserve_attempt
from ratelimit import guessing
from schemas import (
    NewPasskeySchema,
    OwnerSchema,
    PasskeyAnswerSchema,
    PasskeyLoginSchema,
    PasskeyNameSchema,
    PasskeySchema,
    new_passkey_schema,
    owner_schema,
    passkey_answer_schema,
    passkey_login_schema,
    passkey_name_schema,
    passkey_schema,
    passkeys_schema,
)
from sessions import log_in
from stepup import mark_recent
from throttles import client_address, user_key

TAG = "Passkeys"
OPTIONS = {"type": "object"}  # WebAuthn's options JSON, as py_webauthn writes it
NOT_RIGHT = "That passkey could not be verified."
UNLESS_YOU = (
    "\n\nIf this was not you, log in, end your other sessions, change your password and check "
    "your passkeys at once.\n"
)
Reply = tuple[Any, int]


def own_passkey(passkey_id: int) -> Passkey:
    passkey = db.session.scalar(
        select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == g.user.id)
    )
    if passkey is None:
        abort(404, "Passkey not found.")
    return passkey


# --- yours ---


class PasskeyRegistrationOptions(Resource):
    @operation(
        "passkeyRegistrationOptions",
        "WebAuthn creation options for a new passkey (discoverable, user verification)",
        (200, OPTIONS),
        tag=TAG,
    )
    def post(self) -> Reply:
        options = registration_options(caller_row())
        db.session.commit()
        return options, 200


class PasskeyList(Resource):
    @operation("listPasskeys", "Your passkeys", (200, PasskeySchema(many=True)), tag=TAG)
    def get(self) -> Reply:
        return passkeys_schema.dump(passkeys_of(g.user.id)), 200

    @operation(
        "addPasskey",
        "Register a passkey with the authenticator's answer to the creation options",
        (201, PasskeySchema),
        body=NewPasskeySchema,
        tag=TAG,
    )
    def post(self) -> Reply:
        data = new_passkey_schema.load(json_body())
        user = caller_row()
        if passkey_count(user.id) >= PASSKEYS_PER_USER:
            raise invalid("credential", f"You have {PASSKEYS_PER_USER} passkeys; remove one first.")
        try:
            passkey = register(user, data["credential"], data["name"])
        except PasskeyRefused:
            db.session.commit()  # the challenge is used up either way
            raise invalid("credential", NOT_RIGHT) from None
        db.session.flush()
        record_event(user, "passkey_added")
        notify_owner(
            user, "A passkey was added", f"The passkey “{passkey.name}” was added." + UNLESS_YOU
        )
        db.session.commit()
        return passkey_schema.dump(passkey), 201


class PasskeyItem(Resource):
    @operation(
        "renamePasskey", "Rename a passkey", (200, PasskeySchema), body=PasskeyNameSchema, tag=TAG
    )
    def patch(self, passkey_id: int) -> Reply:
        passkey = own_passkey(passkey_id)
        passkey.name = passkey_name_schema.load(json_body())["name"]
        db.session.commit()
        return passkey_schema.dump(passkey), 200

    @operation("removePasskey", "Remove a passkey", (204, None), tag=TAG)
    def delete(self, passkey_id: int) -> Response:
        passkey = own_passkey(passkey_id)
        user = caller_row()
        db.session.delete(passkey)
        db.session.flush()
        forget_recovery_codes_unless_a_factor_is_left(user.id)
        record_event(user, "passkey_removed")
        notify_owner(
            user, "A passkey was removed", f"The passkey “{passkey.name}” was removed." + UNLESS_YOU
        )
        db.session.commit()
        return no_content()


# --- the second step of a login ---


class LoginSecondFactorPasskeyOptions(Resource):
    @operation(
        "logInSecondFactorPasskeyOptions",
        "WebAuthn request options for the pending login's passkeys",
        (200, OPTIONS),
        errors=(401,),
        refusal="No login waiting for a second factor",
        tag=TAG,
    )
    def post(self) -> Reply:
        pending = current_pending_login()
        options = authentication_options("login_mfa", pending.user_id)
        db.session.commit()
        return options, 200


class LoginSecondFactorPasskey(Resource):
    @operation(
        "logInSecondFactorPasskey",
        "The second step of a login, with a passkey",
        (200, OwnerSchema),
        body=PasskeyAnswerSchema,
        errors=(401,),
        refusal="A passkey that could not be verified, or no login waiting for a second factor",
        tag=TAG,
    )
    def post(self) -> Reply:
        credential = passkey_answer_schema.load(json_body())["credential"]
        pending = current_pending_login()
        user = pending.user
        with second_factor_guess(user):  # a failure counts as a wrong code
            reserve_attempt(pending)
            try:
                authenticate("login_mfa", user.id, credential)
            except PasskeyRefused:
                db.session.commit()  # the challenge is used up either way
                record_event_after_response(user, "mfa_failed")
                abort(401, NOT_RIGHT)
        complete(pending)
        record_event(user, "passkey_login")
        db.session.commit()
        return owner_schema.dump(user), 200


# --- a login with a passkey alone ---


class LoginPasskeyOptions(Resource):
    @operation(
        "logInPasskeyOptions",
        "WebAuthn request options for a login with a passkey, naming no one",
        (200, OPTIONS),
        tag=TAG,
    )
    def post(self) -> Reply:
        options = authentication_options("login", None)
        db.session.commit()
        return options, 200


class LoginPasskey(Resource):
    @operation(
        "logInPasskey",
        "Log in with a passkey alone: with user verification it is both factors",
        (200, OwnerSchema),
        body=PasskeyLoginSchema,
        errors=(401,),
        refusal="A passkey that could not be verified",
        tag=TAG,
    )
    def post(self) -> Reply:
        data = passkey_login_schema.load(json_body())
        address = client_address()
        named = credential_passkey(data["credential"])  # whose account the guess is against
        limits: list[Any] = [(login_address_limit, address, None)]
        if named is not None:
            username = named.user.username
            account = f"{address}/{name_digest(username)}"
            limits.append((login_account_limit, account, username))
        with guessing(*limits):
            try:
                passkey = authenticate("login", None, data["credential"])
                if passkey.user.disabled:
                    raise PasskeyRefused("disabled")
            except PasskeyRefused:
                db.session.commit()  # the challenge is used up either way
                if named is not None:
                    record_event_after_response(named.user, "login_failed")
                abort(401, NOT_RIGHT)
        user = passkey.user
        log_in(user, data["remember"])
        record_event(user, "passkey_login")
        record_event(user, "login")
        note_device(user)
        db.session.commit()
        return owner_schema.dump(user), 200


# --- step-up ---


class ReauthenticatePasskeyOptions(Resource):
    @operation(
        "reauthenticatePasskeyOptions",
        "WebAuthn request options to confirm it is you",
        (200, OPTIONS),
        tag=TAG,
    )
    def post(self) -> Reply:
        options = authentication_options("reauthenticate", g.user.id)
        db.session.commit()
        return options, 200


class ReauthenticatePasskey(Resource):
    @operation(
        "reauthenticatePasskey",
        "Confirm it is you with a passkey",
        (204, None),
        body=PasskeyAnswerSchema,
        errors=(401,),
        tag=TAG,
    )
    def post(self) -> Response:
        credential = passkey_answer_schema.load(json_body())["credential"]
        user = caller_row()
        with guessing((reauth_limit, user_key(), None)):
            try:
                authenticate("reauthenticate", user.id, credential)
            except PasskeyRefused:
                db.session.commit()
                record_event_after_response(user, "mfa_failed")
                abort(401, NOT_RIGHT)
        mark_recent()
        record_event(user, "reauthenticated")
        db.session.commit()
        return no_content()
