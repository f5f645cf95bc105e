"""What a request brings: its JSON body and its bearer token, read the one safe way."""

from typing import Any

from flask import abort, current_app, request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType


def json_body() -> dict[str, Any]:
    """The request's JSON object, or the house 400/415 (never a 500 on deep nesting)."""
    try:
        refuse_over_long_chunked_body()
        data = request.get_json()
    except UnsupportedMediaType:
        abort(415)
    except BadRequest:
        abort(400, "Request body is not valid JSON.")
    except RecursionError:
        abort(400, "Request body is nested too deeply.")
    if not isinstance(data, dict):
        abort(400, "Request body must be a JSON object.")
    return data


def refuse_over_long_chunked_body() -> None:
    """413 for a body over MAX_CONTENT_LENGTH sent without a Content-Length (chunked), as for
    one announced too long: werkzeug stops reading such a body at the limit, without an error,
    so what follows would be judged as cut-off JSON (a 400)."""
    if request.content_length is not None or not request.is_json:
        return
    if len(request.get_data(cache=True)) >= current_app.config["MAX_CONTENT_LENGTH"]:
        if request.input_stream.read(1):  # the raw stream: is there more past the limit?
            abort(413)


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer` request, which no browser attaches by itself."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None
