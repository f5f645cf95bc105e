"""What makes a configuration unsafe to start with: checked before the app serves anything.

configuration_problems() is a function of the environment (and the settings read from it), so
tests call it directly; config.py refuses to start when it finds anything.
"""

import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from environment import Environment
from origins import ORIGIN_RE

SECRET_KEY_MIN_BYTES = 32
BCRYPT_LOG_ROUNDS_MIN_IN_PRODUCTION = 12


def debug_requested(environ: Mapping[str, str]) -> bool:
    """FLASK_DEBUG as Flask reads it (flask.helpers.get_debug_flag)."""
    value = environ.get("FLASK_DEBUG")
    return bool(value and value.lower() not in ("0", "false", "no"))


def configuration_problems(environment: Environment, settings: Mapping[str, Any]) -> list[str]:
    """What makes these settings, read from environment, unsafe to start with; production adds
    its own rules. Each problem is one sentence naming the variable to change."""
    problems = list(environment.problems)
    if settings["SESSION_COOKIE_SAMESITE"] == "None" and not settings["SESSION_COOKIE_SECURE"]:
        problems.append(
            "SESSION_COOKIE_SAMESITE=None needs SESSION_COOKIE_SECURE=true: browsers drop "
            "a SameSite=None cookie that is not Secure"
        )
    for origin in settings["CORS_ORIGINS"]:
        if origin == "*" or "*" in origin:
            problems.append(
                "CORS_ORIGINS must not contain '*': with credentials it would trust every site"
            )
        elif not ORIGIN_RE.fullmatch(origin):
            problems.append(
                f"CORS_ORIGINS entry {origin!r} is not an exact origin like https://app.example.com"
            )
    if settings["APP_ENV"] != "production":
        return problems
    if len(environment.text("SECRET_KEY").encode()) < SECRET_KEY_MIN_BYTES:
        problems.append(
            f"SECRET_KEY must be set to a random value of at least {SECRET_KEY_MIN_BYTES} bytes"
        )
    if debug_requested(environment.environ):
        problems.append("debug mode must be off (unset FLASK_DEBUG)")
    if not settings["SESSION_COOKIE_SECURE"]:
        problems.append("session cookies must be Secure (remove SESSION_COOKIE_SECURE=false)")
    if not settings["REDIS_URL"]:
        problems.append("REDIS_URL must be set: in-memory rate limits are per process")
    if settings["BCRYPT_LOG_ROUNDS"] < BCRYPT_LOG_ROUNDS_MIN_IN_PRODUCTION:
        problems.append(f"BCRYPT_LOG_ROUNDS must be at least {BCRYPT_LOG_ROUNDS_MIN_IN_PRODUCTION}")
    if not environment.text("MFA_ENCRYPTION_KEY").strip():
        problems.append(
            "MFA_ENCRYPTION_KEY must be set: a Fernet key of its own encrypts TOTP secrets "
            "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())')"
        )
    if not settings["MAIL_SERVER"]:
        problems.append("MAIL_SERVER must be set: without it mail (with its links) goes to the log")
    return problems


def refuse_to_start(app_env: str, problems: list[str]) -> NoReturn:
    print(f"refusing to start (APP_ENV={app_env}): " + "; ".join(problems), file=sys.stderr)
    sys.exit(3)  # gunicorn reads 3 as "worker failed to boot" and stops instead of respawning
