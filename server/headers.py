"""The headers every response carries."""

from flask import Response, current_app

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",  # every answer is about the caller; nothing may be cached
}
HSTS_SECONDS = 365 * 24 * 3600


def add_security_headers(response: Response) -> Response:
    """after_request: the headers above, where a view did not set its own, on every response."""
    headers = response.headers
    present = {name.lower() for name, _ in headers}  # one pass, not a lookup per header
    headers.extend((k, v) for k, v in SECURITY_HEADERS.items() if k.lower() not in present)
    if current_app.config["SESSION_COOKIE_SECURE"] and "strict-transport-security" not in present:
        headers["Strict-Transport-Security"] = f"max-age={HSTS_SECONDS}; includeSubDomains"
    # Origin: the CORS grant depends on it; Cookie: the answer depends on who is logged in
    if "vary" in present:
        response.vary.update(("Cookie", "Origin"))
    else:
        headers["Vary"] = "Cookie, Origin"
    return response
