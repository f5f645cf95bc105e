"""Request ids and the log format: every log line leads to its request, and back."""

import logging
import re
import secrets

from flask import Flask, Response, current_app, g, has_request_context, request

REQUEST_ID_RE = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")


def assign_request_id() -> None:
    """before_request: X-Request-ID from a trusted proxy (TRUSTED_PROXY_COUNT > 0), else new."""
    incoming = request.headers.get("X-Request-ID", "")
    trusted = current_app.config["TRUSTED_PROXY_COUNT"] > 0 and REQUEST_ID_RE.fullmatch(incoming)
    g.request_id = incoming if trusted else secrets.token_hex(16)


def return_request_id(response: Response) -> Response:
    """after_request: the id goes back in X-Request-ID."""
    if "request_id" not in g:  # the request failed before any before_request function ran
        g.request_id = secrets.token_hex(16)
    response.headers["X-Request-ID"] = g.request_id
    return response


class RequestIdFilter(logging.Filter):
    """Stamps every log record with the request's id, so a log line leads to its request."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def log_with_request_ids(app: Flask) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    app.before_request(assign_request_id)
    app.after_request(return_request_id)
