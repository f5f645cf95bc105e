"""What keeps other websites and password guessers out: the cross-site write check, the
throttles on login and sign-up, and the headers every response carries."""

import hashlib
from urllib.parse import urlsplit

from flask import abort, current_app, g, request
from sqlalchemy import select

from common import after_response, find_login_user, record_event
from config import LOOPBACK_ORIGIN_RE, app, caller_key, client_address, db
from models import SecurityEvent, email_lookup
from ratelimit import GuessLimit, Throttle, counters, guessing, parse_limit

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
INVALID_REFERER = "invalid"
BAD_REFERER = "Cross-site request refused: its Referer is not an http(s) URL with a valid origin."
NO_ORIGIN = (
    "Cross-site request refused: it names no origin, and only origins in CORS_ORIGINS may write."
)


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
        return INVALID_REFERER
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return INVALID_REFERER
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
            refuse(None, NO_ORIGIN)
        return
    if origin == INVALID_REFERER:
        refuse(request.headers.get("Referer"), BAD_REFERER)
    own = request.host_url.rstrip("/")
    if origin != own and not origin_allowed(origin):
        refuse(
            origin,
            f"Origin {origin[:100]} may not make changes here: it is neither this API's own "
            f"origin ({own[:100]}) nor listed in CORS_ORIGINS.",
        )


def origin_allowed(origin):
    """Listed in CORS_ORIGINS, or a loopback origin while CORS_ALLOW_LOOPBACK (development)."""
    config = current_app.config
    if origin in config["CORS_ORIGINS"]:
        return True
    return config["CORS_ALLOW_LOOPBACK"] and LOOPBACK_ORIGIN_RE.fullmatch(origin) is not None


def refuse(origin, message):
    """403, with a log line naming the origin: the first thing a developer looks for."""
    app.logger.warning(
        "refused %s %s from origin %r (not in CORS_ORIGINS)", request.method, request.path, origin
    )
    abort(403, message)


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


def name_digest(name):
    """A submitted login name as a limit's key: in the one form the lookup uses (an address as
    stored, `email_lookup`: `bob@ｅxample.com` is `bob@example.com`; a username lowercased), so
    no other spelling of a name gets a fresh budget; hashed, so any text makes a short key."""
    canonical = email_lookup(name) if "@" in name else name.strip().lower()
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def user_key():
    return f"user:{g.user.id}"


def record_lockout(username):
    """The account's owner sees "locked_out" in their history (once per lockout, not per try).
    Looked up and written after the response, so a 429 costs the same for a name nobody has."""

    def write(origin):
        user = find_login_user(username)
        if user is None:
            return
        last = db.session.scalar(
            select(SecurityEvent.type)
            .where(SecurityEvent.user_id == user.id)
            .order_by(SecurityEvent.id.desc())
            .limit(1)
        )
        if last != "locked_out":
            record_event(user, "locked_out", origin)
            db.session.commit()

    after_response(write)


# The probes answer load balancers, which poll them; nothing else escapes the default limit.
UNTHROTTLED = {"healthz", "readyz", "openapi"}

default_throttle = Throttle(
    "RATELIMIT_DEFAULT", "default", key=lambda: f"{request.endpoint}/{caller_key()}"
)


def throttle_caller():
    """before_request: RATELIMIT_DEFAULT per caller and route (all of its methods together)."""
    if request.endpoint is not None and request.endpoint not in UNTHROTTLED:
        default_throttle.check()


# Wrong passwords, with guesses admitted before the check so that concurrent ones cannot pass
# the limit (GuessLimit). Once an account's limit from an address is used up, even the right
# password gets 429 until the window passes; the per-address limit stops one address spraying
# many accounts.
login_address_limit = GuessLimit("RATELIMIT_LOGIN_ADDRESS", "login-address")
login_account_limit = GuessLimit(
    "RATELIMIT_LOGIN_ACCOUNT", "login-account", on_breach=record_lockout
)
# A wrong current password (PUT /me/password, PATCH /me's email, DELETE /me), per user.
reauth_limit = GuessLimit("RATELIMIT_LOGIN_ACCOUNT", "reauthenticate")


def login_guess(username):
    """with login_guess(name): check a login's password (POST /login, POST /tokens)."""
    address = client_address()
    return guessing(
        (login_address_limit, address, username),
        (login_account_limit, f"{address}/{name_digest(username)}", username),
    )


def password_guess():
    """with password_guess(): check the logged-in caller's current password."""
    return guessing((reauth_limit, user_key(), None))


# Only sign-ups that create an account count: a developer's typos (422s) do not lock them out;
# those fall under RATELIMIT_DEFAULT like any other request.
signup_throttle = Throttle(
    "RATELIMIT_SIGNUP", "signup", key=client_address, counts=lambda r: r.status_code == 201
)
# Per address, as a visible 429. Per email address asked about, silently (within_limit()): a
# 429 there would let anyone block the owner's own reset, and say the address was asked about.
password_reset_throttle = Throttle("RATELIMIT_PASSWORD_RESET", "reset-address", key=client_address)
email_verification_throttle = Throttle(
    "RATELIMIT_EMAIL_VERIFICATION", "email-verification", key=user_key
)


def within_limit(setting, *key):
    """Count one hit against app.config[setting] for key; False once it is used up. Fails open."""
    if not current_app.config["RATELIMIT_ENABLED"]:
        return True
    try:
        return counters.hit(parse_limit(current_app.config[setting]), ("silent", *key))
    except Exception:
        app.logger.warning("rate-limit storage failed; allowing", exc_info=True)
        return True
