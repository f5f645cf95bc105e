"""Browsers a user has logged in from: a long-lived, random, HttpOnly cookie names the browser
(only its SHA-256 is stored, per user). A login from a browser the account has not seen is
recorded (`new_device_login`) and mailed to the verified address, naming when, from which
address and which browser, and how to end sessions."""

import hashlib
import secrets
from datetime import timedelta

from flask import Response, after_this_request, current_app, request
from sqlalchemy import select

from bounds import USER_AGENT_MAX_LENGTH
from config import db
from events import record_event
from mailer import notify_owner
from models import KnownDevice, User, utcnow
from throttles import within_limit

DEVICE_COOKIE_LIFETIME = timedelta(days=400)  # the longest browsers keep a cookie
KEY_LENGTH = 43  # secrets.token_urlsafe(32)


def cookie_name() -> str:
    return "__Host-device" if current_app.config["SESSION_COOKIE_SECURE"] else "device"


def device_key() -> str:
    """This browser's key: the one its cookie holds, or a new one (sent with this response)."""
    key = request.cookies.get(cookie_name(), "")
    if len(key) == KEY_LENGTH:
        return key
    key = secrets.token_urlsafe(32)

    @after_this_request
    def set_cookie(response: Response) -> Response:
        response.set_cookie(
            cookie_name(),
            key,
            max_age=int(DEVICE_COOKIE_LIFETIME.total_seconds()),
            path="/",
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite="Lax",
        )
        return response

    return key


def note_device(user: User, first: bool = False) -> None:
    """user logged in (or, first=True, signed up) from this browser: a browser the account has
    not seen before is remembered, and (but for the sign-up's own) reported."""
    # Per user: one browser's rows for two accounts do not show they share it.
    digest = hashlib.sha256(f"{user.id}:{device_key()}".encode()).hexdigest()
    now = utcnow()
    known = db.session.scalar(
        select(KnownDevice).where(KnownDevice.user_id == user.id, KnownDevice.device_hash == digest)
    )
    if known is not None:
        known.last_seen_at = now
        return
    db.session.add(
        KnownDevice(user_id=user.id, device_hash=digest, created_at=now, last_seen_at=now)
    )
    if first:
        return
    record_event(user, "new_device_login")
    if not within_limit("RATELIMIT_EMAIL_VERIFICATION", "new-device", str(user.id)):
        return  # a client that keeps no cookies (a script) is new every time: mail a few
    browser = request.user_agent.string[:USER_AGENT_MAX_LENGTH] or "an unknown browser"
    notify_owner(
        user,
        "A login from a new browser",
        f"Your account was logged in to from a browser it had not been used from before.\n\n"
        f"When: {now:%Y-%m-%d %H:%M} UTC\nFrom: {request.remote_addr or 'an unknown address'}\n"
        f"Browser: {browser}\n\nIf this was you, you need not do anything. If it was not, "
        "end every other session (Settings, or DELETE /sessions), change your password, and "
        "check your second factors.\n",
    )
