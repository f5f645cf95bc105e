"""The settings, and the objects the rest of the API imports: app, db, bcrypt and api, with the
other extensions, bound in order."""

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import load_dotenv
from flask_bcrypt import Bcrypt
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from limits.storage import RedisClusterStorage, RedisSentinelStorage, RedisStorage
from werkzeug.middleware.proxy_fix import ProxyFix

from bounds import BODY_MAX_BYTES, PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from database import Model, database_url, end_sessions_safely, engine_options
from environment import Environment
from errors import JsonApi, send_errors_as_json
from jsonapp import JsonFlask, output_json
from logs import log_with_request_ids
from self_check import configuration_problems, refuse_to_start

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE = f"sqlite:///{ROOT / 'instance' / 'app.db'}"
# What the limits library can keep its counters in, of Redis's kinds.
REDIS_SCHEMES = (
    RedisStorage.STORAGE_SCHEME
    + RedisSentinelStorage.STORAGE_SCHEME
    + RedisClusterStorage.STORAGE_SCHEME
)
DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql", "postgresql+psycopg")


def settings(env: Environment) -> dict[str, Any]:
    """app.config, read from the environment; every value is checked as it is read."""
    app_env = env.choice("APP_ENV", "development", ("development", "production", "testing"))
    production, testing = app_env == "production", app_env == "testing"
    database = database_url(env.url("DATABASE_URL", DEFAULT_DATABASE, DATABASE_SCHEMES))
    database_timeout = env.integer("DATABASE_TIMEOUT", 5, minimum=1, maximum=3600)
    cookie_secure = env.boolean("SESSION_COOKIE_SECURE", production)
    cors_origins = env.origins("CORS_ORIGINS")
    secret_key = env.text("SECRET_KEY", "dev-only-secret-key-never-use-in-production")
    frontend = env.url("FRONTEND_URL", "http://localhost:5173", ("http", "https")).rstrip("/")
    frontend_origin = "{0.scheme}://{0.netloc}".format(urlsplit(frontend))
    return dict(
        APP_ENV=app_env,
        TESTING=testing,
        PROPAGATE_EXCEPTIONS=False,  # every error, in tests too, goes through error_response()
        SECRET_KEY=secret_key,
        SQLALCHEMY_DATABASE_URI=database,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database, database_timeout),
        DATABASE_TIMEOUT=database_timeout,  # seconds anything may wait on the database: a 503
        MAX_CONTENT_LENGTH=BODY_MAX_BYTES,
        BCRYPT_LOG_ROUNDS=env.integer("BCRYPT_LOG_ROUNDS", 4 if testing else 12, 4, 31),
        PASSWORD_MIN_LENGTH=env.integer(
            "PASSWORD_MIN_LENGTH", PASSWORD_MIN_LENGTH, minimum=1, maximum=PASSWORD_MAX_LENGTH
        ),
        PASSWORD_PEPPER=env.text("PASSWORD_PEPPER"),
        SESSION_COOKIE_SECURE=cookie_secure,
        # The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain for the cookie.
        SESSION_COOKIE_NAME="__Host-session" if cookie_secure else "session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE=env.choice(
            "SESSION_COOKIE_SAMESITE", "Lax", ("Lax", "Strict", "None")
        ),
        SESSION_IDLE_TIMEOUT=env.seconds("SESSION_IDLE_TIMEOUT", timedelta(hours=2)),
        SESSION_LIFETIME=env.seconds("SESSION_LIFETIME", timedelta(hours=24)),
        SESSION_REMEMBER_LIFETIME=env.seconds("SESSION_REMEMBER_LIFETIME", timedelta(days=30)),
        SESSION_TOUCH_INTERVAL=timedelta(minutes=1),
        MAIL_SERVER=env.text("MAIL_SERVER"),
        MAIL_PORT=env.integer("MAIL_PORT", 25, minimum=1, maximum=65535),
        MAIL_USERNAME=env.text("MAIL_USERNAME"),
        MAIL_PASSWORD=env.text("MAIL_PASSWORD"),
        MAIL_USE_TLS=env.boolean("MAIL_USE_TLS", False),
        MAIL_FROM=env.text("MAIL_FROM", "Flask IAM API <no-reply@example.com>"),
        MAIL_POLL_SECONDS=5,
        MAIL_MAX_ATTEMPTS=env.integer("MAIL_MAX_ATTEMPTS", 12, minimum=1, maximum=100),  # 3.4 h
        MAIL_BACKGROUND_SENDER=not testing,  # tests deliver the outbox themselves
        FRONTEND_URL=frontend,
        PASSWORD_RESET_LIFETIME=timedelta(hours=1),
        EMAIL_VERIFICATION_LIFETIME=timedelta(days=2),
        CORS_ORIGINS=cors_origins,
        # Development with no CORS_ORIGINS: a front end on this machine (Vite, CRA) at any port.
        CORS_ALLOW_LOOPBACK=app_env == "development" and not cors_origins,
        TRUSTED_PROXY_COUNT=env.integer("TRUSTED_PROXY_COUNT", 0, maximum=10),
        REDIS_URL=env.url("REDIS_URL", "", REDIS_SCHEMES),
        RATELIMIT_ENABLED=env.boolean("RATELIMIT_ENABLED", True),
        RATELIMIT_DEFAULT=env.limit("RATELIMIT_DEFAULT", "300 per minute"),
        RATELIMIT_LOGIN_ACCOUNT=env.limit("RATELIMIT_LOGIN_ACCOUNT", "5 per 15 minutes"),
        RATELIMIT_LOGIN_ADDRESS=env.limit("RATELIMIT_LOGIN_ADDRESS", "30 per minute"),
        RATELIMIT_SIGNUP=env.limit("RATELIMIT_SIGNUP", "10 per hour"),
        RATELIMIT_PASSWORD_RESET=env.limit("RATELIMIT_PASSWORD_RESET", "5 per hour"),
        RATELIMIT_EMAIL_VERIFICATION=env.limit("RATELIMIT_EMAIL_VERIFICATION", "5 per hour"),
        # Second factors. Production must set its own key (self_check.py); elsewhere one is
        # derived from SECRET_KEY, so development needs no setup.
        MFA_ENCRYPTION_KEY=env.fernet_keys("MFA_ENCRYPTION_KEY", [derived_key(secret_key)]),
        MFA_REQUIRED_ROLES=env.words("MFA_REQUIRED_ROLES", ["admin"]),
        REAUTHENTICATION_WINDOW=env.seconds("REAUTHENTICATION_WINDOW", timedelta(seconds=300)),
        # Passkeys belong to a site (the relying party, a domain) and answer pages of an origin.
        WEBAUTHN_RP_ID=env.text("WEBAUTHN_RP_ID", "").strip() or urlsplit(frontend).hostname,
        WEBAUTHN_ORIGINS=env.origins("WEBAUTHN_ORIGINS") or [frontend_origin, *cors_origins],
    )


def derived_key(secret_key: str) -> str:
    """A Fernet key made from SECRET_KEY, for development and tests."""
    digest = hashlib.sha256(b"flask-iam-api/mfa-encryption-key/" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


if os.environ.get("APP_ENV", "development") == "development":
    load_dotenv(ROOT / ".env")  # development only; real environment variables win

environment = Environment(os.environ)
app = JsonFlask(__name__, instance_path=str(ROOT / "instance"), static_folder=None)
app.url_map.merge_slashes = False  # "/posts//1" is a JSON 404, not an HTML redirect
app.config.from_mapping(settings(environment))
if problems := configuration_problems(environment, app.config):
    refuse_to_start(app.config["APP_ENV"], problems)
if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
    Path(app.instance_path).mkdir(exist_ok=True)
if hops := app.config["TRUSTED_PROXY_COUNT"]:
    # Host and prefix too, so that an API proxied under the app's origin (/api) knows its
    # public origin (for the cross-site check) and its URLs (Link headers).
    app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
        app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops
    )

log_with_request_ids(app)
send_errors_as_json(app)
db = SQLAlchemy(app, model_class=Model, session_options={"expire_on_commit": False})
end_sessions_safely(app, db)
migrate = Migrate(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
bcrypt = Bcrypt(app)
api = JsonApi(app)
api.representation("application/json")(output_json)
