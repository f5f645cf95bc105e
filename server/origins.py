"""Which web pages may use the API from a browser: the CORS grant, and the refusal of
state-changing requests that a page on another origin made with the user's cookie."""

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, request
from flask_cors import cross_origin

from inputs import bearer_token

# An exact origin, as CORS_ORIGINS must list them.
ORIGIN_RE = re.compile(r"\Ahttps?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z")
# http://localhost:*, http://127.0.0.1:*, http://[::1]:*: the origins CORS_ALLOW_LOOPBACK trusts.
LOOPBACK_ORIGIN_RE = re.compile(r"\Ahttp://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?\Z")

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
INVALID_REFERER = "invalid"
BAD_REFERER = "Cross-site request refused: its Referer is not an http(s) URL with a valid origin."
NO_ORIGIN = (
    "Cross-site request refused: it names no origin, and only origins in CORS_ORIGINS may write."
)


def allow_cors(app: Flask) -> None:
    """flask-cors's headers for the origins in CORS_ORIGINS (or, in development without them,
    loopback origins at any port), with credentials: an after_request hook."""
    config = app.config
    if config["CORS_ALLOW_LOOPBACK"]:
        app.logger.info(
            "CORS: development mode without CORS_ORIGINS trusts loopback origins on any port "
            "(http://localhost:*, http://127.0.0.1:*, http://[::1]:*); set CORS_ORIGINS to "
            "restrict"
        )
    if not (config["CORS_ORIGINS"] or config["CORS_ALLOW_LOOPBACK"]):
        return
    with_cors_headers: Callable[[Response], Response] = cross_origin(
        # Exact strings only (self_check.py); the one pattern is anchored at both ends.
        origins=config["CORS_ORIGINS"] or [LOOPBACK_ORIGIN_RE],
        supports_credentials=True,
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization"],
        expose_headers=["Link", "Location", "Retry-After"],
        max_age=600,
        automatic_options=False,  # preflights already get a bodiless 204 (JsonFlask)
    )(lambda response: response)

    @app.after_request
    def grant_cors(response: Response) -> Response:
        """flask-cors's headers, for a request a browser page made (it names its Origin); other
        requests need none, and skip the work (Vary: Origin is on every response anyway)."""
        return with_cors_headers(response) if "Origin" in request.headers else response


def origin_of(referer: str | None) -> str | None:
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


def refuse_cross_site_writes() -> None:
    """before_request: 403 for a state-changing request that a page on another origin made with
    the cookie.

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


def origin_allowed(origin: str) -> bool:
    """Listed in CORS_ORIGINS, or a loopback origin while CORS_ALLOW_LOOPBACK (development)."""
    config = current_app.config
    if origin in config["CORS_ORIGINS"]:
        return True
    return bool(config["CORS_ALLOW_LOOPBACK"]) and LOOPBACK_ORIGIN_RE.fullmatch(origin) is not None


def refuse(origin: str | None, message: str) -> None:
    """403, with a log line naming the origin: the first thing a developer looks for."""
    current_app.logger.warning(
        "refused %s %s from origin %r (not in CORS_ORIGINS)", request.method, request.path, origin
    )
    abort(403, message)
