"""What each caller may do how often: the default limit on every route the route table marks
throttled, and the limits on sign-ups, reset links and verification mail. (The limits on
guessing passwords are in credentials.py; the counting itself in ratelimit.py.)"""

from flask import current_app, g, request, session

from ratelimit import Throttle, counters, parse_limit
from routing import route_of


def client_address() -> str:
    """The socket's address, or the one ProxyFix took from TRUSTED_PROXY_COUNT trusted proxies."""
    return request.remote_addr or "unknown"


def caller_key() -> str:
    """Default rate-limit identity: the logged-in user, else the address."""
    user_id = session.get("user_id")
    return f"user:{user_id}" if user_id else f"address:{client_address()}"


def user_key() -> str:
    return f"user:{g.user.id}"


default_throttle = Throttle(
    "RATELIMIT_DEFAULT", "default", key=lambda: f"{request.endpoint}/{caller_key()}"
)


def throttle_caller() -> None:
    """before_request: RATELIMIT_DEFAULT per caller and route (all of its methods together), on
    every route the route table marks throttled."""
    if request.endpoint is None:
        return  # a URL the API does not have: its 404 or 405 costs nothing to count
    route = route_of(request.endpoint)
    if route is None or route.throttled:  # an endpoint missing from the table is throttled
        default_throttle.check()


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


def within_limit(setting: str, *key: str) -> bool:
    """Count one hit against app.config[setting] for key; False once it is used up. Fails open."""
    if not current_app.config["RATELIMIT_ENABLED"]:
        return True
    try:
        return counters.hit(parse_limit(current_app.config[setting]), ("silent", *key))
    except Exception:
        current_app.logger.warning("rate-limit storage failed; allowing", exc_info=True)
        return True
