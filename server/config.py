"""The composition root: the app, its configuration and its extensions, bound in order."""

import inspect
import logging
import os
import re
import secrets
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import limits
import orjson
from dotenv import load_dotenv
from flask import Flask, current_app, g, has_request_context, jsonify, request, session
from flask.json.provider import DefaultJSONProvider
from flask_bcrypt import Bcrypt
from flask_cors import cross_origin
from flask_migrate import Migrate
from flask_restful import Api
from flask_sqlalchemy import SQLAlchemy
from limits.storage import RedisClusterStorage, RedisSentinelStorage, RedisStorage
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound, ServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix

ROOT = Path(__file__).resolve().parent.parent

if os.environ.get("APP_ENV", "development") == "development":
    load_dotenv(ROOT / ".env")  # development only; real environment variables win

# Every setting is checked when the app starts, in every environment: a value a reader cannot
# take is noted here (the variable, the value, what it accepts) and the app refuses to start
# (configuration_problems), rather than failing later, after a commit, in some request.
SETTING_PROBLEMS = []


def setting(name, default, parse, accepts):
    """os.environ[name] read by parse(), or default when unset or empty. A value parse refuses
    (ValueError) is recorded in SETTING_PROBLEMS, and the default stands in meanwhile."""
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    try:
        return parse(raw.strip())
    except ValueError:
        SETTING_PROBLEMS.append(f"{name}={raw[:100]!r} is not {accepts}")
        return default


def env_choice(name, default, choices):
    """One of choices, in any letter case, as the choice spells it."""
    by_lower = {choice.lower(): choice for choice in choices}

    def parse(value):
        if value.lower() not in by_lower:
            raise ValueError(value)
        return by_lower[value.lower()]

    return setting(name, default, parse, "one of " + ", ".join(choices))


APP_ENV = env_choice("APP_ENV", "development", ("development", "production", "testing"))
PRODUCTION = APP_ENV == "production"
MAX_PER_USER = 100  # API tokens a user may hold, and sessions GET /sessions lists


def env_int(name, default, minimum=0, maximum=2**31 - 1):
    def parse(value):
        number = int(value)
        if not minimum <= number <= maximum:
            raise ValueError(value)
        return number

    return setting(name, default, parse, f"a whole number from {minimum} to {maximum}")


BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
BOOLEANS.update({"0": False, "false": False, "no": False, "off": False})


def env_bool(name, default):
    def parse(value):
        if value.lower() not in BOOLEANS:
            raise ValueError(value)
        return BOOLEANS[value.lower()]

    return setting(name, default, parse, "true or false (1/0, yes/no, on/off)")


def env_list(name):
    return [
        item.strip().rstrip("/") for item in os.environ.get(name, "").split(",") if item.strip()
    ]


def env_seconds(name, default):
    seconds = env_int(name, int(default.total_seconds()), minimum=1)
    return timedelta(seconds=seconds)


def env_limit(name, default):
    """A rate limit such as "5 per 15 minutes" (the limits library's notation)."""

    def parse(value):
        limits.parse(value)  # ValueError if it cannot
        return value

    return setting(name, default, parse, 'a limit such as "5 per 15 minutes"')


def env_url(name, default, schemes):
    """A URL with one of schemes and a host (or, for sqlite and unix sockets, a path)."""

    def parse(value):
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            raise ValueError(value)
        if parts.scheme in ("http", "https") and not parts.hostname:
            raise ValueError(value)
        parts.port  # noqa: B018 (ValueError for a port that is not a number or out of range)
        return value

    return setting(
        name, default, parse, "a URL starting " + " or ".join(f"{s}://" for s in schemes)
    )


# What the limits library can keep its counters in, of Redis's kinds.
REDIS_SCHEMES = tuple(
    RedisStorage.STORAGE_SCHEME
    + RedisSentinelStorage.STORAGE_SCHEME
    + RedisClusterStorage.STORAGE_SCHEME
)


def database_url():
    """DATABASE_URL as SQLAlchemy wants it: postgresql:// means psycopg 3."""
    url = env_url(
        "DATABASE_URL",
        f"sqlite:///{ROOT / 'instance' / 'app.db'}",
        ("sqlite", "postgres", "postgresql", "postgresql+psycopg"),
    )
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def no_content():
    """204: no body, so no Content-Type either."""
    response = app.response_class(status=204)
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
    def default(cls, value):
        if isinstance(value, datetime):  # only the json module asks: the same text as orjson's
            return orjson.dumps(value, option=cls.OPTIONS)[1:-1].decode()
        return super().default(value)

    def encode(self, obj):
        try:
            return orjson.dumps(obj, default=self.default, option=self.OPTIONS)
        except TypeError:  # what orjson refuses, an integer past 64 bits, the json module writes
            return super().dumps(obj, separators=(",", ":"), sort_keys=False).encode()

    def dumps(self, obj, **kwargs):
        return self.encode(obj).decode()

    def response(self, *args, **kwargs):
        """jsonify()'s documented rules (one argument is the value; several, or keywords, make
        an array or an object), with orjson's bytes as the body, not decoded and encoded again."""
        if args and kwargs:
            raise TypeError("app.json.response() takes either args or kwargs, not both")
        value = args[0] if len(args) == 1 else (args or kwargs or None)
        return current_app.response_class(self.encode(value) + b"\n", mimetype=self.mimetype)


class JsonFlask(Flask):
    json_provider_class = FastJsonProvider
    is_async_by_code = {}  # code object -> is it `async def`?

    def ensure_sync(self, func):
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

    def make_default_options_response(self):
        """Preflights and OPTIONS get a bodiless 204 (flask-cors adds its headers after)."""
        response = no_content()
        response.allow.update(super().make_default_options_response().allow)
        return response


app = JsonFlask(__name__, instance_path=str(ROOT / "instance"), static_folder=None)
app.url_map.merge_slashes = False  # "/posts//1" is a JSON 404, not an HTML redirect
app.config.from_mapping(
    APP_ENV=APP_ENV,
    TESTING=APP_ENV == "testing",
    PROPAGATE_EXCEPTIONS=False,  # every error, in tests too, goes through error_response()
    SECRET_KEY=os.environ.get("SECRET_KEY", "dev-only-secret-key-never-use-in-production"),
    SQLALCHEMY_DATABASE_URI=database_url(),
    SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "hide_parameters": True},
    MAX_CONTENT_LENGTH=1024 * 1024,
    BCRYPT_LOG_ROUNDS=env_int(
        "BCRYPT_LOG_ROUNDS", 4 if APP_ENV == "testing" else 12, minimum=4, maximum=31
    ),
    PASSWORD_MIN_LENGTH=env_int("PASSWORD_MIN_LENGTH", 8, minimum=1, maximum=1024),
    PASSWORD_MAX_LENGTH=1024,
    PASSWORD_PEPPER=os.environ.get("PASSWORD_PEPPER", ""),
    SESSION_COOKIE_SECURE=env_bool("SESSION_COOKIE_SECURE", PRODUCTION),
    SESSION_COOKIE_HTTPONLY=True,
    SESSION_COOKIE_SAMESITE=env_choice("SESSION_COOKIE_SAMESITE", "Lax", ("Lax", "Strict", "None")),
    SESSION_IDLE_TIMEOUT=env_seconds("SESSION_IDLE_TIMEOUT", timedelta(hours=2)),
    SESSION_LIFETIME=env_seconds("SESSION_LIFETIME", timedelta(hours=24)),
    SESSION_REMEMBER_LIFETIME=env_seconds("SESSION_REMEMBER_LIFETIME", timedelta(days=30)),
    SESSION_TOUCH_INTERVAL=timedelta(minutes=1),
    MAIL_SERVER=os.environ.get("MAIL_SERVER", ""),
    MAIL_PORT=env_int("MAIL_PORT", 25, minimum=1, maximum=65535),
    MAIL_USERNAME=os.environ.get("MAIL_USERNAME", ""),
    MAIL_PASSWORD=os.environ.get("MAIL_PASSWORD", ""),
    MAIL_USE_TLS=env_bool("MAIL_USE_TLS", False),
    MAIL_FROM=os.environ.get("MAIL_FROM", "Flask IAM API <no-reply@example.com>"),
    MAIL_POLL_SECONDS=5,
    MAIL_MAX_ATTEMPTS=env_int("MAIL_MAX_ATTEMPTS", 12, minimum=1, maximum=100),  # 12: 3.4 h
    MAIL_BACKGROUND_SENDER=APP_ENV != "testing",  # tests deliver the outbox themselves
    FRONTEND_URL=env_url("FRONTEND_URL", "http://localhost:5173", ("http", "https")).rstrip("/"),
    PASSWORD_RESET_LIFETIME=timedelta(hours=1),
    EMAIL_VERIFICATION_LIFETIME=timedelta(days=2),
    CORS_ORIGINS=env_list("CORS_ORIGINS"),
    # Development with no CORS_ORIGINS: a front end on this machine (Vite, CRA) at any port.
    CORS_ALLOW_LOOPBACK=APP_ENV == "development" and not env_list("CORS_ORIGINS"),
    TRUSTED_PROXY_COUNT=env_int("TRUSTED_PROXY_COUNT", 0, maximum=10),
    REDIS_URL=env_url("REDIS_URL", "", REDIS_SCHEMES),
    RATELIMIT_ENABLED=env_bool("RATELIMIT_ENABLED", True),
    RATELIMIT_DEFAULT=env_limit("RATELIMIT_DEFAULT", "300 per minute"),
    RATELIMIT_LOGIN_ACCOUNT=env_limit("RATELIMIT_LOGIN_ACCOUNT", "5 per 15 minutes"),
    RATELIMIT_LOGIN_ADDRESS=env_limit("RATELIMIT_LOGIN_ADDRESS", "30 per minute"),
    RATELIMIT_SIGNUP=env_limit("RATELIMIT_SIGNUP", "10 per hour"),
    RATELIMIT_PASSWORD_RESET=env_limit("RATELIMIT_PASSWORD_RESET", "5 per hour"),
    RATELIMIT_EMAIL_VERIFICATION=env_limit("RATELIMIT_EMAIL_VERIFICATION", "5 per hour"),
)
# The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain for the cookie.
app.config["SESSION_COOKIE_NAME"] = (
    "__Host-session" if app.config["SESSION_COOKIE_SECURE"] else "session"
)
REQUEST_ID_RE = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")


@app.before_request
def assign_request_id():
    """X-Request-ID from a trusted proxy (TRUSTED_PROXY_COUNT > 0), else a new one."""
    incoming = request.headers.get("X-Request-ID", "")
    trusted = app.config["TRUSTED_PROXY_COUNT"] > 0 and REQUEST_ID_RE.fullmatch(incoming)
    g.request_id = incoming if trusted else secrets.token_hex(16)


@app.after_request
def return_request_id(response):
    if "request_id" not in g:  # the request failed before any before_request function ran
        g.request_id = secrets.token_hex(16)
    response.headers["X-Request-ID"] = g.request_id
    return response


# Nothing waits on the database longer than DATABASE_TIMEOUT seconds: then it is a 503.
DATABASE_TIMEOUT = env_int("DATABASE_TIMEOUT", 5, minimum=1, maximum=3600)
if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
    app.config["SQLALCHEMY_ENGINE_OPTIONS"].update(
        connect_args={"timeout": DATABASE_TIMEOUT},  # waiting for SQLite's write lock
        pool_pre_ping=False,  # a file does not go away like a server connection does
    )
    Path(app.instance_path).mkdir(exist_ok=True)
else:
    app.config["SQLALCHEMY_ENGINE_OPTIONS"].update(
        pool_timeout=DATABASE_TIMEOUT,
        connect_args={
            "connect_timeout": DATABASE_TIMEOUT,
            "options": f"-c statement_timeout={DATABASE_TIMEOUT * 1000}",
            # A server that stops answering (frozen, or its network gone) fails the connection
            # instead of hanging it: unacknowledged writes give up after DATABASE_TIMEOUT, and
            # keepalives find a dead peer on an idle connection.
            "tcp_user_timeout": DATABASE_TIMEOUT * 1000,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        },
    )
    import psycopg

    class DeadlineConnection(psycopg.Connection):
        """statement_timeout is the server's to enforce, and tcp_user_timeout covers only data
        the server's kernel never acknowledged: a server process that is stopped while its kernel
        still answers (SIGSTOP, `docker pause`, a backend stuck in I/O) would hold a request
        forever. So during a request every wait on the connection gives up after
        DATABASE_TIMEOUT (+ 0.5 s, letting statement_timeout speak first) and closes it: the
        pool drops it and the request gets its 503."""

        def wait(self, gen, *args, **kwargs):
            deadline = None
            if not args[1:] and kwargs.get("timeout") is None and has_request_context():
                deadline = kwargs["timeout"] = DATABASE_TIMEOUT + 0.5
            started = time.monotonic()
            try:
                return super().wait(gen, *args, **kwargs)
            except psycopg.OperationalError:
                # psycopg signals the timeout with an OperationalError of its own (a private
                # class): ours is the one that came when the deadline had passed.
                if deadline is None or time.monotonic() - started < deadline:
                    raise
                self.pgconn.finish()  # mid-protocol: the connection cannot be used again
                raise psycopg.OperationalError(
                    f"no answer from the database within {deadline} s"
                ) from None

    @event.listens_for(Engine, "do_connect")
    def _connect_with_deadline(dialect, _record, cargs, cparams):
        if dialect.driver == "psycopg" and not dialect.is_async:
            return DeadlineConnection.connect(*cargs, **cparams)
        return None


class RequestIdFilter(logging.Filter):
    """Stamps every log record with the request's id, so a log line leads to its request."""

    def filter(self, record):
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


logging.basicConfig(
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s",
)
for _handler in logging.getLogger().handlers:
    _handler.addFilter(RequestIdFilter())

ORIGIN_RE = re.compile(r"\Ahttps?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z")
# http://localhost:*, http://127.0.0.1:*, http://[::1]:*: the origins CORS_ALLOW_LOOPBACK trusts.
LOOPBACK_ORIGIN_RE = re.compile(r"\Ahttp://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?\Z")


def configuration_problems(config):
    """What makes this configuration unsafe to start; production adds its own rules."""
    problems = list(SETTING_PROBLEMS)
    if config["SESSION_COOKIE_SAMESITE"] == "None" and not config["SESSION_COOKIE_SECURE"]:
        problems.append(
            "SESSION_COOKIE_SAMESITE=None needs SESSION_COOKIE_SECURE=true: browsers drop "
            "a SameSite=None cookie that is not Secure"
        )
    for origin in config["CORS_ORIGINS"]:
        if origin == "*" or "*" in origin:
            problems.append(
                "CORS_ORIGINS must not contain '*': with credentials it would trust every site"
            )
        elif not ORIGIN_RE.fullmatch(origin):
            problems.append(
                f"CORS_ORIGINS entry {origin!r} is not an exact origin like https://app.example.com"
            )
    if config["APP_ENV"] != "production":
        return problems
    if len(os.environ.get("SECRET_KEY", "").encode()) < 32:
        problems.append("SECRET_KEY must be set to a random value of at least 32 bytes")
    if config["DEBUG"]:
        problems.append("debug mode must be off (unset FLASK_DEBUG)")
    if not config["SESSION_COOKIE_SECURE"]:
        problems.append("session cookies must be Secure (remove SESSION_COOKIE_SECURE=false)")
    if not config["REDIS_URL"]:
        problems.append("REDIS_URL must be set: in-memory rate limits are per process")
    if config["BCRYPT_LOG_ROUNDS"] < 12:
        problems.append("BCRYPT_LOG_ROUNDS must be at least 12")
    if not config["MAIL_SERVER"]:
        problems.append("MAIL_SERVER must be set: without it mail (with its links) goes to the log")
    return problems


if problems := configuration_problems(app.config):
    print(f"refusing to start (APP_ENV={APP_ENV}): " + "; ".join(problems), file=sys.stderr)
    sys.exit(3)  # gunicorn reads 3 as "worker failed to boot" and stops instead of respawning


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """SQLite enforces foreign keys only when asked, and WAL lets readers run beside a writer."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


# --- one error shape for every failure: {"error": "..."} (+ "errors" on 422) ---

MESSAGES = {
    400: "The request could not be understood.",
    401: "Authentication required.",
    403: "You are not allowed to do that.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "That would conflict with the current state of the data.",
    413: "Request body is too large (the limit is 1 MB).",
    415: "Request body must be JSON (Content-Type: application/json).",
    422: "The request has invalid fields.",
    429: "Too many requests. Try again later.",
    500: "Internal server error.",
    503: "Service temporarily unavailable. Try again shortly.",
}


def database_unavailable(e):
    """The database could not be reached or the connection broke: a 503, not a bug."""
    return isinstance(e, OperationalError) or (
        isinstance(e, DBAPIError) and e.connection_invalidated
    )


def error_response(e):
    """Turn any exception into the house JSON error, after rolling the request's writes back."""
    if isinstance(e, InternalServerError) and e.original_exception is not None:
        e = e.original_exception  # Flask wraps what escaped the view; judge the real cause
    try:
        db.session.rollback()
    except Exception:  # the database may be the thing that failed
        app.logger.warning("rollback failed", exc_info=True)
    if database_unavailable(e):
        app.logger.error("database unavailable: %s", type(e.orig).__name__)
        e = ServiceUnavailable()
    elif isinstance(e, (StaleDataError, ObjectDeletedError)):
        e = NotFound()  # the row was deleted by a concurrent request while this one used it
    elif not isinstance(e, HTTPException):
        app.logger.error("unhandled exception", exc_info=e)
        e = InternalServerError()
    explicit = e.description and e.description != type(e).description
    body = {"error": e.description if explicit else MESSAGES.get(e.code, e.name + ".")}
    if getattr(e, "errors", None):
        body["errors"] = e.errors
    response = jsonify(body)
    response.status_code = e.code
    for name, value in e.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


class JsonApi(Api):
    """Flask-RESTful routes its own errors; send them through the same error_response()."""

    def handle_error(self, e):
        return error_response(e)


app.register_error_handler(HTTPException, error_response)
app.register_error_handler(Exception, error_response)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def end_database_session(exc):
    """teardown_appcontext: end the request's session even when the database went away during
    it: a failed rollback must not turn the response already built (a 503) into the server's
    HTML 500. Registered after Flask-SQLAlchemy's own teardown, so it runs first (Flask runs
    them in reverse), which then finds nothing left to do."""
    try:
        db.session.remove()
    except DBAPIError:
        app.logger.warning("database session close failed; discarding its connection")
        try:
            db.session.invalidate()
        except DBAPIError:
            pass
        db.session.registry.clear()


db = SQLAlchemy(app, metadata=metadata, session_options={"expire_on_commit": False})
app.teardown_appcontext(end_database_session)
migrate = Migrate(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
bcrypt = Bcrypt(app)
api = JsonApi(app)


def client_address():
    """The socket's address, or the one ProxyFix took from TRUSTED_PROXY_COUNT trusted proxies."""
    return request.remote_addr or "unknown"


def caller_key():
    """Default rate-limit identity: the logged-in user, else the address."""
    user_id = session.get("user_id")
    return f"user:{user_id}" if user_id else f"address:{client_address()}"


if app.config["TRUSTED_PROXY_COUNT"]:
    hops = app.config["TRUSTED_PROXY_COUNT"]
    # Host and prefix too, so that an API proxied under the app's origin (/api) knows its
    # public origin (for the cross-site check) and its URLs (Link headers).
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)
if app.config["CORS_ALLOW_LOOPBACK"]:
    app.logger.info(
        "CORS: development mode without CORS_ORIGINS trusts loopback origins on any port "
        "(http://localhost:*, http://127.0.0.1:*, http://[::1]:*); set CORS_ORIGINS to restrict"
    )
if app.config["CORS_ORIGINS"] or app.config["CORS_ALLOW_LOOPBACK"]:
    with_cors_headers = cross_origin(
        # Exact strings only (checked above); the one pattern is anchored at both ends.
        origins=app.config["CORS_ORIGINS"] or [LOOPBACK_ORIGIN_RE],
        supports_credentials=True,
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization"],
        expose_headers=["Link", "Location", "Retry-After"],
        max_age=600,
        automatic_options=False,  # preflights already get a bodiless 204 (JsonFlask)
    )(lambda response: response)

    @app.after_request
    def grant_cors(response):
        """flask-cors's headers, for a request a browser page made (it names its Origin); other
        requests need none, and skip the work (Vary: Origin is on every response anyway)."""
        return with_cors_headers(response) if "Origin" in request.headers else response


@api.representation("application/json")
def output_json(data, code, headers=None):
    response = app.json.response(data)
    response.status_code = code
    response.headers.extend(headers or {})
    return response
