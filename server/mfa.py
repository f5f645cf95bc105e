"""Second factors: TOTP (RFC 6238, with pyotp) and recovery codes.

A TOTP secret is stored encrypted (Fernet, MFA_ENCRYPTION_KEY: the first key encrypts, every key
decrypts, so keys can be rotated), and is pending until a first code confirms it. A code is
accepted in its 30-second step or one step either side, and only once: the step it was accepted
in is recorded, in the same UPDATE that checks no later or equal step was, so two requests with
one code cannot both pass. Recovery codes are random (60 bits), easy to type, stored as keyed
hashes (HMAC-SHA256 under a key derived from MFA_ENCRYPTION_KEY), and used up by an UPDATE that
only one request can win.
"""

import hashlib
import hmac
import io
import secrets
import time
from typing import Any

import pyotp
import segno
from cryptography.fernet import Fernet, MultiFernet
from flask import current_app
from sqlalchemy import delete, func, select, update

from config import db
from database import rows_affected
from errors import refuse
from models import RecoveryCode, TotpFactor, User, utcnow
from passkeys import passkey_count, remove_passkeys

MFA_SETUP_REQUIRED = "Set up a second factor first: your role requires one (GET /me/mfa)."
ISSUER = "Flask IAM API"  # what authenticator apps show beside the account name
TOTP_PERIOD = 30  # seconds per code
TOTP_DIGITS = 6
TOTP_DRIFT_STEPS = 1  # codes of the step before and after are accepted too
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/i/l to mistype (31)
RECOVERY_CODE_GROUPS = 3  # xxxx-xxxx-xxxx: 12 characters, 59 bits
RECOVERY_CODE_GROUP_LENGTH = 4


# --- secrets at rest ---


def cipher() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in current_app.config["MFA_ENCRYPTION_KEY"]])


def encrypt(secret: str) -> str:
    return cipher().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    return cipher().decrypt(token.encode()).decode()


# --- TOTP ---


def totp_factor(user_id: int, confirmed: bool = True) -> TotpFactor | None:
    """The user's TOTP factor: the confirmed one, or (confirmed=False) the pending one."""
    found = db.session.scalar(select(TotpFactor).where(TotpFactor.user_id == user_id))
    if found is None or (found.confirmed_at is not None) != confirmed:
        return None
    return found


def start_totp(user: User) -> dict[str, str]:
    """A new secret for user, pending until confirmed (replacing any pending one): the secret,
    its otpauth:// URI and that URI as a QR code (SVG), for an authenticator app."""
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    db.session.execute(
        delete(TotpFactor).where(TotpFactor.user_id == user.id, TotpFactor.confirmed_at.is_(None))
    )
    db.session.add(TotpFactor(user_id=user.id, secret=encrypt(secret), created_at=utcnow()))
    uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
        name=user.email if user.email and user.email_verified else user.username,
        issuer_name=ISSUER,
    )
    svg = io.BytesIO()  # with its namespace, so that it also shows as an <img> (data: URI)
    segno.make(uri, error="m").save(svg, kind="svg", xmldecl=False, svgns=True, scale=4)
    qr_svg = svg.getvalue().decode()
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": qr_svg}


def typed_digits(code: str) -> str | None:
    """A TOTP code as typed (spaces and dashes ignored), if it is TOTP_DIGITS ASCII digits."""
    digits = "".join(ch for ch in code if not ch.isspace() and ch != "-")
    if len(digits) != TOTP_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return digits


def matching_step(factor: TotpFactor, code: str) -> int | None:
    """The time step whose code this is (now, or one step either side), or None."""
    typed = typed_digits(code)
    if typed is None:
        return None
    code = typed
    totp = pyotp.TOTP(decrypt(factor.secret), digits=TOTP_DIGITS, interval=TOTP_PERIOD)
    now = int(time.time()) // TOTP_PERIOD
    for step in range(now - TOTP_DRIFT_STEPS, now + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.at(step * TOTP_PERIOD), code):
            return step
    return None


def accept_totp(factor: TotpFactor, code: str) -> bool:
    """Is code right, and the first use of its step (or a later one)? Records the step."""
    step = matching_step(factor, code)
    if step is None:
        return False
    newer = (TotpFactor.last_step.is_(None)) | (TotpFactor.last_step < step)
    taken = update(TotpFactor).where(TotpFactor.id == factor.id, newer).values(last_step=step)
    return rows_affected(db.session, taken) == 1


def confirm_totp(factor: TotpFactor, code: str) -> bool:
    """Turn a pending factor on, if code is right for it."""
    if not accept_totp(factor, code):
        return False
    factor.confirmed_at = utcnow()
    return True


# --- recovery codes ---


def recovery_code_hashes(code: str) -> list[str]:
    """code's keyed hash under each MFA_ENCRYPTION_KEY (the first is the one stored)."""
    typed = "".join(ch for ch in code.lower() if ch.isalnum())
    return [
        hmac.new(
            hashlib.sha256(b"flask-iam-api/recovery-codes/" + key.encode()).digest(),
            typed.encode(),
            hashlib.sha256,
        ).hexdigest()
        for key in current_app.config["MFA_ENCRYPTION_KEY"]
    ]


def new_recovery_codes(user_id: int) -> list[str]:
    """A new set of codes for the user; the old set is void. Returned this once."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [
        "-".join(
            "".join(
                secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(RECOVERY_CODE_GROUP_LENGTH)
            )
            for _ in range(RECOVERY_CODE_GROUPS)
        )
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    db.session.add_all(
        RecoveryCode(user_id=user_id, code_hash=recovery_code_hashes(code)[0]) for code in codes
    )
    return codes


def use_recovery_code(user_id: int, code: str) -> bool:
    """Use up one of the user's codes: True for the one request that does."""
    if not code or len(code) > 64:
        return False
    used = (
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash.in_(recovery_code_hashes(code)),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return rows_affected(db.session, used) == 1


def recovery_codes_left(user_id: int) -> int:
    query = select(func.count()).where(
        RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
    )
    return db.session.scalar(query) or 0


# --- what a user has ---


def second_factors(user_id: int) -> list[str]:
    """The second factors the user has on: "totp", "passkey"."""
    factors = ["totp"] if totp_factor(user_id) is not None else []
    return factors + (["passkey"] if passkey_count(user_id) else [])


def has_second_factor(user_id: int) -> bool:
    return bool(second_factors(user_id))


def login_methods(user_id: int) -> list[str]:
    """What the second step of a login takes from this user."""
    factors = second_factors(user_id)
    return [*factors, "recovery_code"] if factors and recovery_codes_left(user_id) else factors


def reauthentication_methods(user_id: int) -> list[str]:
    """What POST /reauthenticate takes from this user."""
    return ["password", *second_factors(user_id)]


def remove_factors(user_id: int) -> bool:
    """Turn every second factor of the user off, recovery codes included; were any on?"""
    had = has_second_factor(user_id)
    db.session.execute(delete(TotpFactor).where(TotpFactor.user_id == user_id))
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    remove_passkeys(user_id)
    return had


def forget_recovery_codes_unless_a_factor_is_left(user_id: int) -> None:
    """Recovery codes stand in for a second factor: with none left, they go."""
    if not has_second_factor(user_id):
        db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))


def require_factor_for_role(user: Any) -> None:
    """403 {"mfa_setup_required": true} for a user whose role (MFA_REQUIRED_ROLES) needs a
    second factor and who has none: before any use of that role's powers."""
    if user.role in current_app.config["MFA_REQUIRED_ROLES"] and not has_second_factor(user.id):
        refuse(403, MFA_SETUP_REQUIRED, mfa_setup_required=True)


def status(user: Any) -> dict[str, Any]:
    """GET /me/mfa."""
    return {
        "totp": totp_factor(user.id) is not None,
        "passkeys": passkey_count(user.id),
        "recovery_codes_left": recovery_codes_left(user.id),
        "required": user.role in current_app.config["MFA_REQUIRED_ROLES"],
    }
