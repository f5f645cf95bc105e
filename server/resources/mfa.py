"""Your second factors: TOTP (an authenticator app) and recovery codes. Turning a factor on or
off, or making new codes, needs a recent authentication (the route table marks them)."""

from typing import Any

from flask import Response, abort, g
from flask_restful import Resource

from caller import caller_row
from config import db
from errors import invalid
from events import record_event
from inputs import json_body
from jsonapp import no_content
from mailer import notify_owner
from mfa import (
    confirm_totp,
    forget_recovery_codes_unless_a_factor_is_left,
    has_second_factor,
    new_recovery_codes,
    start_totp,
    status,
    totp_factor,
)
from openapi import operation
from schemas import (
    CodeSchema,
    MfaStatusSchema,
    RecoveryCodesSchema,
    TotpSetupSchema,
    code_schema,
)

TAG = "Second factors"
Reply = tuple[dict[str, Any], int]
UNLESS_YOU = (
    "\n\nIf this was not you, log in, end your other sessions, change your password and check "
    "your second factors at once.\n"
)


class MfaStatus(Resource):
    @operation("getMfa", "Your second factors", (200, MfaStatusSchema), tag=TAG)
    def get(self) -> Reply:
        return status(g.user), 200


class Totp(Resource):
    @operation(
        "startTotp",
        "A new TOTP secret (with its QR code), on once a code confirms it",
        (200, TotpSetupSchema),
        errors=(422,),  # TOTP is already on
        tag=TAG,
    )
    def post(self) -> Reply:
        if totp_factor(g.user.id) is not None:
            raise invalid("_schema", "TOTP is already on; turn it off first to change it.")
        setup = start_totp(caller_row())
        db.session.commit()
        return setup, 200

    @operation("stopTotp", "Turn TOTP off", (204, None), errors=(404,), tag=TAG)
    def delete(self) -> Response:
        user = caller_row()
        factor = totp_factor(user.id)
        if factor is None:
            abort(404, "TOTP is not on.")
        db.session.delete(factor)
        forget_recovery_codes_unless_a_factor_is_left(user.id)
        record_event(user, "mfa_disabled")
        notify_owner(
            user,
            "Two-factor authentication was turned off",
            "TOTP (your authenticator app) was just turned off for your account." + UNLESS_YOU,
        )
        db.session.commit()
        return no_content()


class TotpConfirm(Resource):
    @operation(
        "confirmTotp",
        "Turn TOTP on with a first code; the recovery codes are shown this once",
        (200, RecoveryCodesSchema),
        body=CodeSchema,
        tag=TAG,
    )
    def post(self) -> Reply:
        code = code_schema.load(json_body())["code"]
        user = caller_row()
        pending = totp_factor(user.id, confirmed=False)
        if pending is None:
            raise invalid("code", "No TOTP secret is waiting: POST /me/mfa/totp first.")
        if not confirm_totp(pending, code):
            raise invalid("code", "That code is not right (or was already used).")
        codes = new_recovery_codes(user.id)
        record_event(user, "mfa_enabled")
        notify_owner(
            user,
            "Two-factor authentication is on",
            "TOTP (an authenticator app) was just turned on for your account: logging in now "
            "asks for a code from it, or one of your recovery codes." + UNLESS_YOU,
        )
        db.session.commit()
        return {"recovery_codes": codes}, 200


class RecoveryCodes(Resource):
    @operation(
        "regenerateRecoveryCodes",
        "New recovery codes (the old ones stop working), shown this once",
        (200, RecoveryCodesSchema),
        errors=(422,),  # no second factor is on
        tag=TAG,
    )
    def post(self) -> Reply:
        user = caller_row()
        if not has_second_factor(user.id):
            raise invalid("_schema", "Turn a second factor on first.")
        codes = new_recovery_codes(user.id)
        record_event(user, "recovery_codes_regenerated")
        notify_owner(
            user,
            "New recovery codes",
            "New recovery codes were just made for your account; the old ones no longer work."
            + UNLESS_YOU,
        )
        db.session.commit()
        return {"recovery_codes": codes}, 200
