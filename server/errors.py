"""One error shape for every failure: {"error": "..."} (+ "errors" per field on 422)."""

from typing import Any, NoReturn

from flask import Flask, Response, current_app, jsonify
from flask_restful import Api
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError
from werkzeug.exceptions import (
    HTTPException,
    InternalServerError,
    NotFound,
    ServiceUnavailable,
    UnprocessableEntity,
    default_exceptions,
)

from bounds import BODY_MAX_BYTES
from database import database_unavailable

MESSAGES = {
    400: "The request could not be understood.",
    401: "Authentication required.",
    403: "You are not allowed to do that.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "That would conflict with the current state of the data.",
    413: f"Request body is too large (the limit is {BODY_MAX_BYTES // 1024 // 1024} MB).",
    415: "Request body must be JSON (Content-Type: application/json).",
    422: "The request has invalid fields.",
    429: "Too many requests. Try again later.",
    500: "Internal server error.",
    503: "Service temporarily unavailable. Try again shortly.",
}


class InvalidInput(UnprocessableEntity):
    """A 422 with the fields at fault: {"field": ["what is wrong", ...]}."""

    def __init__(self, errors: Any, description: str | None = None) -> None:
        super().__init__(description)
        self.errors = errors


def refuse(code: int, message: str, **details: Any) -> NoReturn:
    """Raise the HTTP error for code, whose JSON body also carries details
    ({"error": message, "mfa_required": true, ...})."""
    error = default_exceptions[code](message)
    vars(error)["details"] = details  # read back by error_response()
    raise error


def invalid(field: str, message: str) -> InvalidInput:
    """A 422 about one field, shaped like a schema's."""
    return InvalidInput({field: [message]}, message)


def error_response(e: BaseException) -> Response:
    """Turn any exception into the house JSON error, after rolling the request's writes back."""
    if isinstance(e, InternalServerError) and e.original_exception is not None:
        e = e.original_exception  # Flask wraps what escaped the view; judge the real cause
    try:
        current_app.extensions["sqlalchemy"].session.rollback()
    except Exception:  # the database may be the thing that failed
        current_app.logger.warning("rollback failed", exc_info=True)
    if database_unavailable(e):
        current_app.logger.error("database unavailable: %s", type(getattr(e, "orig", e)).__name__)
        e = ServiceUnavailable()
    elif isinstance(e, (StaleDataError, ObjectDeletedError)):
        e = NotFound()  # the row was deleted by a concurrent request while this one used it
    elif not isinstance(e, HTTPException):
        current_app.logger.error("unhandled exception", exc_info=e)
        e = InternalServerError()
    assert isinstance(e, HTTPException) and e.code is not None
    explicit = e.description and e.description != type(e).description
    body: dict[str, Any] = {
        "error": e.description if explicit else MESSAGES.get(e.code, e.name + ".")
    }
    if errors := getattr(e, "errors", None):
        body["errors"] = errors
    body.update(getattr(e, "details", {}))
    response = jsonify(body)
    response.status_code = e.code
    for name, value in e.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


class JsonApi(Api):
    """Flask-RESTful routes its own errors; send them through the same error_response()."""

    def handle_error(self, e: Exception) -> Response:
        return error_response(e)


def send_errors_as_json(app: Flask) -> None:
    app.register_error_handler(HTTPException, error_response)
    app.register_error_handler(Exception, error_response)
