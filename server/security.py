"""What keeps other websites and password guessers out: the cross-site write check, the
throttles on login and sign-up, and the headers every response carries."""

import hashlib
from urllib.parse import urlsplit

from flask import abort, current_app, g, request
from limits import parse as parse_limit

from config import app, caller_key, client_address, db, limiter

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CROSS_SITE = "Cross-site request refused."


def bearer_token():
    """The token of an `Authorization: Bearer` request, which no browser attaches by itself."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def origin_of(referer):
    """The origin a Referer names; a Referer that cannot be read names no allowed origin."""
    if not referer:
        return None
    try:
        parts = urlsplit(referer)
        port = parts.port
    except ValueError:
        return "invalid"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "invalid"
    default_port = {"http": 80, "https": 443}[parts.scheme]
    suffix = f":{port}" if port and port != default_port else ""
    return f"{parts.scheme}://{parts.hostname}{suffix}"


def refuse_cross_site_writes():
    """403 for a state-changing request that a page on another origin made with the cookie.

    CORS only tells the browser what to hide from a page; the server would still act. So the
    server checks Origin (or Referer) against its own origin and CORS_ORIGINS, and refuses
    Sec-Fetch-Site: cross-site from anywhere unlisted. Requests naming no origin at all (curl,
    Postman, servers) pass; bearer-token requests carry no ambient credential and skip this.
    """
    if request.method not in UNSAFE_METHODS or bearer_token():
        return
    origin = request.headers.get("Origin") or origin_of(request.headers.get("Referer"))
    if origin is None:
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            abort(403, CROSS_SITE)
        return
    if origin != request.host_url.rstrip("/") and origin not in current_app.config["CORS_ORIGINS"]:
        abort(403, CROSS_SITE)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",  # every answer is about the caller; nothing may be cached
}


def add_security_headers(response):
    """The headers above, where a view did not set its own, on every response."""
    headers = response.headers
    present = {name.lower() for name, _ in headers}  # one pass, not a lookup per header
    headers.extend((k, v) for k, v in SECURITY_HEADERS.items() if k.lower() not in present)
    if app.config["SESSION_COOKIE_SECURE"] and "strict-transport-security" not in present:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    # Origin: the CORS grant depends on it; Cookie: the answer depends on who is logged in
    if "vary" in present:
        response.vary.update(("Cookie", "Origin"))
    else:
        headers["Vary"] = "Cookie, Origin"
    return response


# --- throttles ---


def body_field(name):
    """A string field of the JSON body, lowercased, for keying a limit ("" when there is none)."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        body = None
    value = body.get(name) if isinstance(body, dict) else None
    value = value.strip().lower() if isinstance(value, str) else ""
    return hashlib.sha256(value.encode(errors="replace")).hexdigest()[:32]


def login_account_key():
    """One counter per (address, submitted username): guessing one account from one place."""
    return f"{client_address()}/{body_field('username')}"


def no_password_given():
    """A request that proves nothing (PATCH /me without a password) is not a guess."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        return True
    return not (isinstance(body, dict) and ("password" in body or "current_password" in body))


def user_key():
    return f"user:{g.user.id}"


def failed_login(response):
    return response.status_code == 401


def wrong_password(response):
    return response.status_code == 403


def record_lockout(limit):
    """The account's owner sees "locked_out" in their history (once per lockout, not per try),
    written after the response so that the 429 looks the same for unknown usernames."""
    from common import find_login_user, record_event_after_response
    from models import SecurityEvent

    try:
        name = request.get_json(silent=True).get("username")
        user = find_login_user(name) if isinstance(name, str) else None
    except (AttributeError, RecursionError):
        user = None
    if user is None:
        return
    last = db.session.scalar(
        db.select(SecurityEvent.type)
        .where(SecurityEvent.user_id == user.id)
        .order_by(SecurityEvent.id.desc())
        .limit(1)
    )
    if last != "locked_out":
        record_event_after_response(user, "locked_out")


def config_value(name):
    return lambda: current_app.config[name]


# Flask-Limiter drops the default limit from any route with a limit of its own (once one of its
# methods has run), so every such Resource puts this first in its `decorators`: one bucket per
# route, for all its methods, whatever ran first.
default_throttle = limiter.limit(config_value("RATELIMIT_DEFAULT"), key_func=caller_key)

# Only failures count, but once the limit is reached even the right password gets 429 until the
# window passes. The per-address limit stops one address spraying many accounts.
login_throttles = [
    limiter.shared_limit(
        config_value("RATELIMIT_LOGIN_ACCOUNT"),
        scope="login-account",
        key_func=login_account_key,
        deduct_when=failed_login,
        on_breach=record_lockout,
    ),
    limiter.shared_limit(
        config_value("RATELIMIT_LOGIN_ADDRESS"),
        scope="login-address",
        key_func=client_address,
        deduct_when=failed_login,
    ),
]
signup_throttle = limiter.limit(config_value("RATELIMIT_SIGNUP"), key_func=client_address)
# A wrong current password (PUT /me/password, DELETE /me) counts like a failed login, per user.
reauth_throttle = limiter.shared_limit(
    config_value("RATELIMIT_LOGIN_ACCOUNT"),
    scope="reauthenticate",
    key_func=user_key,
    deduct_when=wrong_password,
    exempt_when=no_password_given,
)
# Per address, as a visible 429. Per email address asked about, silently (within_limit()): a
# 429 there would let anyone block the owner's own reset, and say the address was asked about.
password_reset_throttle = limiter.shared_limit(
    config_value("RATELIMIT_PASSWORD_RESET"), scope="reset-address", key_func=client_address
)


def within_limit(limit, *key):
    """Count one hit against `limit` for `key`; False once it is used up. Fails open."""
    try:
        return limiter.limiter.hit(parse_limit(current_app.config[limit]), "silent", *key)
    except Exception:
        app.logger.warning("rate-limit storage failed; allowing", exc_info=True)
        return True


email_verification_throttle = limiter.limit(
    config_value("RATELIMIT_EMAIL_VERIFICATION"), key_func=user_key
)
