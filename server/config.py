"""The composition root: the app, its configuration and its extensions, bound in order."""

import logging
import os
from datetime import timedelta
from pathlib import Path

from dotenv import load_dotenv
from flask import Flask, jsonify
from flask_bcrypt import Bcrypt
from flask_migrate import Migrate
from flask_restful import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

ROOT = Path(__file__).resolve().parent.parent

if os.environ.get("APP_ENV", "development") == "development":
    load_dotenv(ROOT / ".env")  # development only; real environment variables win
APP_ENV = os.environ.get("APP_ENV", "development")


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_seconds(name, default):
    return timedelta(seconds=env_int(name, default.total_seconds()))


def database_url():
    """DATABASE_URL as SQLAlchemy wants it: postgresql:// means psycopg 3."""
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{ROOT / 'instance' / 'app.db'}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


app = Flask(__name__, instance_path=str(ROOT / "instance"), static_folder=None)
app.config.from_mapping(
    APP_ENV=APP_ENV,
    TESTING=APP_ENV == "testing",
    PROPAGATE_EXCEPTIONS=False,  # every error, in tests too, goes through error_response()
    SECRET_KEY=os.environ.get("SECRET_KEY", "dev-only-secret-key-never-use-in-production"),
    SQLALCHEMY_DATABASE_URI=database_url(),
    SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "hide_parameters": True},
    MAX_CONTENT_LENGTH=1024 * 1024,
    BCRYPT_LOG_ROUNDS=env_int("BCRYPT_LOG_ROUNDS", 4 if APP_ENV == "testing" else 12),
    PASSWORD_MIN_LENGTH=env_int("PASSWORD_MIN_LENGTH", 8),
    PASSWORD_MAX_LENGTH=1024,
    PASSWORD_PEPPER=os.environ.get("PASSWORD_PEPPER", ""),
    SESSION_COOKIE_NAME="session",
    SESSION_COOKIE_HTTPONLY=True,
    SESSION_COOKIE_SAMESITE="Lax",
    SESSION_COOKIE_SECURE=False,
    SESSION_IDLE_TIMEOUT=env_seconds("SESSION_IDLE_TIMEOUT", timedelta(hours=2)),
    SESSION_LIFETIME=env_seconds("SESSION_LIFETIME", timedelta(hours=24)),
    SESSION_REMEMBER_LIFETIME=env_seconds("SESSION_REMEMBER_LIFETIME", timedelta(days=30)),
    SESSION_TOUCH_INTERVAL=timedelta(minutes=1),
)
if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
    app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] = {"timeout": 30}
    Path(app.instance_path).mkdir(exist_ok=True)
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
    413: "Request body is too large (the limit is 1 MB).",
    415: "Request body must be JSON (Content-Type: application/json).",
    422: "The request has invalid fields.",
    429: "Too many requests. Try again later.",
    500: "Internal server error.",
    503: "Service temporarily unavailable. Try again shortly.",
}


def error_response(e):
    """Turn any exception into the house JSON error, after rolling the request's writes back."""
    try:
        db.session.rollback()
    except Exception:  # the database may be the thing that failed
        app.logger.warning("rollback failed", exc_info=True)
    if isinstance(e, OperationalError) or (isinstance(e, DBAPIError) and e.connection_invalidated):
        app.logger.error("database unavailable: %s", type(e.orig).__name__)
        e = ServiceUnavailable()
    elif not isinstance(e, HTTPException):
        app.logger.error("unhandled exception", exc_info=e)
        e = InternalServerError()
    explicit = e.description != type(e).description and e.description
    body = {"error": explicit or MESSAGES.get(e.code, e.name + ".")}
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
db = SQLAlchemy(app, metadata=metadata, session_options={"expire_on_commit": False})
migrate = Migrate(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
bcrypt = Bcrypt(app)
api = JsonApi(app)


@api.representation("application/json")
def output_json(data, code, headers=None):
    response = app.json.response(data)
    response.status_code = code
    response.headers.extend(headers or {})
    return response
