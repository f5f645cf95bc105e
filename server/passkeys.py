"""Passkeys (WebAuthn, with py_webauthn): registering one, and checking what an authenticator
answers, for a second factor, a login by itself, or step-up.

Every ceremony has two requests: options (with a random challenge), then the authenticator's
answer. The challenge is kept server-side, single use, for CHALLENGE_LIFETIME, and tied to the
browser that asked by a cookie holding a random key (only its SHA-256 is stored) and, where
someone is known (logged in, or a pending login), to that user. User verification (a PIN or a
fingerprint) is required every time, so a passkey is both factors; sign counters are checked
(py_webauthn refuses one that does not grow, unless both are 0, as synced passkeys report).
The relying party is WEBAUTHN_RP_ID and the answers must come from WEBAUTHN_ORIGINS.
"""

import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any

from flask import Response, after_this_request, current_app, request
from sqlalchemy import delete, func, select
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from bounds import CREDENTIAL_ID_MAX_LENGTH
from config import db
from database import rows_affected
from models import Passkey, User, WebauthnChallenge, utcnow

RP_NAME = "Flask IAM API"
CHALLENGE_LIFETIME = timedelta(minutes=5)
TIMEOUT_MS = int(CHALLENGE_LIFETIME.total_seconds() * 1000)


class PasskeyRefused(Exception):
    """The authenticator's answer does not prove what it must (any reason: one answer)."""


# --- challenges ---


def cookie_name(purpose: str) -> str:
    """One cookie per ceremony, so that one begun inside another (confirming it is you with a
    passkey while adding one) does not replace the other's challenge."""
    secure = current_app.config["SESSION_COOKIE_SECURE"]
    return f"{'__Host-' if secure else ''}webauthn-{purpose}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_challenge(purpose: str, user_id: int | None, handle: str | None = None) -> bytes:
    """A new challenge for purpose (and user, and the user handle creation options name), kept
    until answered; its cookie goes out with this response (replacing any earlier one)."""
    challenge, key, now = secrets.token_bytes(32), secrets.token_urlsafe(32), utcnow()
    db.session.add(
        WebauthnChallenge(
            key_hash=hash_key(key),
            purpose=purpose,
            user_id=user_id,
            challenge=bytes_to_base64url(challenge),
            user_handle=handle,
            created_at=now,
            expires_at=now + CHALLENGE_LIFETIME,
        )
    )

    @after_this_request
    def set_cookie(response: Response) -> Response:
        response.set_cookie(
            cookie_name(purpose),
            key,
            max_age=int(CHALLENGE_LIFETIME.total_seconds()),
            path="/",
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite=current_app.config["SESSION_COOKIE_SAMESITE"],
        )
        return response

    return challenge


def take_challenge(purpose: str, user_id: int | None) -> WebauthnChallenge:
    """The challenge this browser was given for purpose (and user), used up now: only one
    request can take it. PasskeyRefused if there is none, it expired or another took it."""
    key = request.cookies.get(cookie_name(purpose), "")
    found = db.session.scalar(
        select(WebauthnChallenge).where(
            WebauthnChallenge.key_hash == hash_key(key),
            WebauthnChallenge.purpose == purpose,
        )
    )
    if found is None or found.user_id != user_id:
        raise PasskeyRefused("no such challenge")
    taken = delete(WebauthnChallenge).where(WebauthnChallenge.id == found.id)
    if rows_affected(db.session, taken) != 1 or found.expires_at <= utcnow():
        raise PasskeyRefused("challenge used or expired")
    db.session.execute(  # what else has expired goes too
        delete(WebauthnChallenge).where(WebauthnChallenge.expires_at <= utcnow())
    )
    return found


# --- registering ---


def passkeys_of(user_id: int) -> list[Passkey]:
    query = select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.id)
    return list(db.session.scalars(query))


def passkey_count(user_id: int) -> int:
    return db.session.scalar(select(func.count()).where(Passkey.user_id == user_id)) or 0


def user_handle(user_id: int) -> str:
    """The random handle the user's authenticators keep for the account (base64url)."""
    existing = db.session.scalar(
        select(Passkey.user_handle).where(Passkey.user_id == user_id).limit(1)
    )
    return existing or bytes_to_base64url(secrets.token_bytes(32))


def registration_options(user: User) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptionsJSON for a new passkey of user: discoverable (so it
    can log in alone), with user verification, not one the user already has."""
    handle = user_handle(user.id)
    options = generate_registration_options(
        rp_id=current_app.config["WEBAUTHN_RP_ID"],
        rp_name=RP_NAME,
        user_id=base64url_to_bytes(handle),
        user_name=user.username,
        user_display_name=user.username,
        challenge=issue_challenge("register", user.id, handle),
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id))
            for p in passkeys_of(user.id)
        ],
    )
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


def register(user: User, credential: dict[str, Any], name: str) -> Passkey:
    """The new passkey, from the authenticator's answer to registration_options()."""
    taken = take_challenge("register", user.id)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(taken.challenge),
            expected_rp_id=current_app.config["WEBAUTHN_RP_ID"],
            expected_origin=current_app.config["WEBAUTHN_ORIGINS"],
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PasskeyRefused(str(error)) from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if db.session.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)):
        raise PasskeyRefused("this passkey is registered already")
    passkey = Passkey(
        user_id=user.id,
        credential_id=credential_id,
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        user_handle=taken.user_handle or user_handle(user.id),
        name=name,
        created_at=utcnow(),
    )
    db.session.add(passkey)
    return passkey


# --- authenticating ---


def authentication_options(purpose: str, user_id: int | None) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptionsJSON: for user_id's passkeys, or (None) for any
    discoverable one (a login that names no one)."""
    allowed = [] if user_id is None else passkeys_of(user_id)
    options = generate_authentication_options(
        rp_id=current_app.config["WEBAUTHN_RP_ID"],
        challenge=issue_challenge(purpose, user_id),
        timeout=TIMEOUT_MS,
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id)) for p in allowed
        ],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


def credential_passkey(credential: dict[str, Any]) -> Passkey | None:
    """The stored passkey an answer names (by its rawId), if any."""
    raw_id = credential.get("rawId") if isinstance(credential, dict) else None
    if not isinstance(raw_id, str) or not 0 < len(raw_id) <= CREDENTIAL_ID_MAX_LENGTH:
        return None
    return db.session.scalar(select(Passkey).where(Passkey.credential_id == raw_id))


def authenticate(purpose: str, user_id: int | None, credential: dict[str, Any]) -> Passkey:
    """The passkey that answered the challenge for purpose: of user_id, or (None) of whoever
    it belongs to, checked against its user handle. PasskeyRefused otherwise."""
    challenge = base64url_to_bytes(take_challenge(purpose, user_id).challenge)
    passkey = credential_passkey(credential)
    if passkey is None or (user_id is not None and passkey.user_id != user_id):
        raise PasskeyRefused("unknown passkey")
    response = credential.get("response")
    handle = response.get("userHandle") if isinstance(response, dict) else None
    if user_id is None and handle != passkey.user_handle:
        raise PasskeyRefused("the passkey is not this account's")
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=current_app.config["WEBAUTHN_RP_ID"],
            expected_origin=current_app.config["WEBAUTHN_ORIGINS"],
            credential_public_key=base64url_to_bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PasskeyRefused(str(error)) from None
    passkey.sign_count = verified.new_sign_count
    passkey.last_used_at = utcnow()
    return passkey


def remove_passkeys(user_id: int) -> None:
    db.session.execute(delete(Passkey).where(Passkey.user_id == user_id))
