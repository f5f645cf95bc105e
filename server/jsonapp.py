"""The Flask subclass the API runs on, and its JSON: orjson output, bodiless 204s and OPTIONS."""

import inspect
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import orjson
from flask import Flask, Response, current_app
from flask.json.provider import DefaultJSONProvider


def no_content() -> Response:
    """204: no body, so no Content-Type either."""
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    return response


class FastJsonProvider(DefaultJSONProvider):
    """Responses written by orjson, several times faster than the json module (README,
    "Benchmark"). Datetimes come out as Timestamp writes UTC ones, 2026-11-21T22:43:45Z, so a
    hot path may hand over the datetimes it read from the database, which UTCDateTime makes UTC
    (an aware datetime in another zone would keep its offset: convert it first). Keys stay in the
    order the code built them; text is UTF-8, not \\u escapes."""

    OPTIONS = (
        orjson.OPT_NON_STR_KEYS  # marshmallow keys errors in a list by index: {"0": [...]}
        | orjson.OPT_UTC_Z
        | orjson.OPT_OMIT_MICROSECONDS
        | orjson.OPT_NAIVE_UTC
    )

    @classmethod
    def default(cls, value: Any) -> Any:
        if isinstance(value, datetime):  # only the json module asks: the same text as orjson's
            return orjson.dumps(value, option=cls.OPTIONS)[1:-1].decode()
        return DefaultJSONProvider.default(value)

    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self.default, option=self.OPTIONS)
        except TypeError:  # what orjson refuses, an integer past 64 bits, the json module writes
            return super().dumps(obj, separators=(",", ":"), sort_keys=False).encode()

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self.encode(obj).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """jsonify()'s documented rules (one argument is the value; several, or keywords, make
        an array or an object), with orjson's bytes as the body, not decoded and encoded again."""
        if args and kwargs:
            raise TypeError("app.json.response() takes either args or kwargs, not both")
        value = args[0] if len(args) == 1 else (args or kwargs or None)
        return current_app.response_class(self.encode(value) + b"\n", mimetype=self.mimetype)


class JsonFlask(Flask):
    json_provider_class = FastJsonProvider
    is_async_by_code: dict[object, bool] = {}  # code object -> is it `async def`?

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask asks inspect whether each hook and view is `async def` on every request (ten
        times a request here); the answer is remembered per code object, which the closures
        made anew per request (after_this_request callbacks) and the bound methods of the
        Resource Flask-RESTful makes per request share, so the cache stays as small as the code.
        """
        code = getattr(getattr(func, "__func__", func), "__code__", None)
        if code is None:  # a partial, a callable object: ask each time, as Flask does
            return super().ensure_sync(func)
        is_async = self.is_async_by_code.get(code)
        if is_async is None:
            is_async = self.is_async_by_code[code] = inspect.iscoroutinefunction(func)
        return self.async_to_sync(func) if is_async else func

    def make_default_options_response(self) -> Response:
        """Preflights and OPTIONS get a bodiless 204 (flask-cors adds its headers after)."""
        response = no_content()
        response.allow.update(super().make_default_options_response().allow)
        return response


def output_json(data: Any, code: int, headers: Any = None) -> Response:
    """Flask-RESTful's representation of application/json: the app's JSON provider's bytes."""
    response = cast(Response, current_app.json.response(data))
    response.status_code = code
    response.headers.extend(headers or {})
    return response
