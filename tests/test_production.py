"""APP_ENV=production refuses to start with an unsafe configuration, and runs safely otherwise."""

import os
import subprocess
import sys
import uuid

import pytest

from apprunner import run_app
from config import settings
from conftest import PASSWORD, ROOT
from environment import Environment
from self_check import configuration_problems
from services import GUNICORN, delete_redis_keys, environment_without, session_cookie

GOOD_SECRET = "k" * 32
GOOD_MFA_KEY = "a2V5LWZvci1lbmNyeXB0aW5nLXRvdHAtc2VjcmV0cy0="  # Fernet: 32 bytes, base64url


def production_env(redis_url="redis://127.0.0.1:6379/0", **changes):
    env = environment_without(
        ("RATELIMIT_", "REDIS_", "CORS_", "SECRET_", "FLASK_", "SESSION_", "MAIL_", "MFA_")
    )
    env.update(
        APP_ENV="production",
        SECRET_KEY=GOOD_SECRET,
        REDIS_URL=redis_url,
        DATABASE_URL="sqlite:////tmp/never-opened.db",
        BCRYPT_LOG_ROUNDS="12",
        MAIL_SERVER="127.0.0.1",
        MFA_ENCRYPTION_KEY=GOOD_MFA_KEY,
    )
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def problems(environ):
    """What the self-check finds in the settings read from environ (as when the app starts)."""
    environment = Environment(environ)
    return configuration_problems(environment, settings(environment))


def start(env):
    """Import the app the way every entry point does; return (exit code, stderr lines)."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, 'server'); import app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


def test_a_safe_production_configuration_starts():
    assert problems(production_env()) == []
    assert start(production_env()) == (0, [])


def test_a_refused_configuration_stops_the_app_with_one_clear_line():
    code, lines = start(production_env(SECRET_KEY=None, REDIS_URL=None))
    assert code == 3
    assert len(lines) == 1, lines
    assert lines[0] == (
        "refusing to start (APP_ENV=production): SECRET_KEY must be set to a random value of at "
        "least 32 bytes; REDIS_URL must be set: in-memory rate limits are per process"
    )


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"SECRET_KEY": None}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "x" * 31}, "SECRET_KEY must be set to a random value of at least 32 bytes"),
        ({"FLASK_DEBUG": "1"}, "debug mode must be off"),
        ({"SESSION_COOKIE_SECURE": "false"}, "session cookies must be Secure"),
        ({"CORS_ORIGINS": "https://app.example.com,*"}, "CORS_ORIGINS must not contain '*'"),
        ({"REDIS_URL": None}, "REDIS_URL must be set: in-memory rate limits are per process"),
        ({"BCRYPT_LOG_ROUNDS": "10"}, "BCRYPT_LOG_ROUNDS must be at least 12"),
        ({"MAIL_SERVER": None}, "MAIL_SERVER must be set"),
        ({"MFA_ENCRYPTION_KEY": None}, "MFA_ENCRYPTION_KEY must be set"),
    ],
    ids=[
        "no-secret",
        "short-secret",
        "debug",
        "insecure-cookie",
        "cors-wildcard",
        "memory-limits",
        "weak-bcrypt",
        "no-mail-server",
        "no-mfa-key",
    ],
)
def test_unsafe_production_settings_are_refused(changes, problem):
    found = problems(production_env(**changes))
    assert len(found) == 1, found
    assert problem in found[0]


@pytest.mark.parametrize(
    "origins",
    [
        "*",
        "https://*.example.com",
        r"https://app\.example\.com",
        "app.example.com",
        "https://app.example.com/path",
    ],
)
def test_wildcards_and_patterns_in_cors_origins_are_refused_everywhere(origins):
    found = problems({**os.environ, "APP_ENV": "development", "CORS_ORIGINS": origins})
    assert len(found) == 1 and "CORS_ORIGINS" in found[0]


def test_gunicorn_stops_instead_of_respawning_on_a_refused_configuration():
    done = subprocess.run(
        [*GUNICORN, "--workers", "2", "--bind", "127.0.0.1:0"],
        cwd=ROOT,
        env=production_env(SECRET_KEY=None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "refusing to start (APP_ENV=production): SECRET_KEY must be set" in done.stderr
    # gunicorn may print its own HaltServer traceback as it stops; none may run through our code
    assert "server/config.py" not in done.stderr and "server/app.py" not in done.stderr


def test_production_cookie_is_host_prefixed_secure_and_strict_about_scope(tmp_path, redis_url):
    signup = {
        "method": "POST",
        "path": "/signup",
        "json": {"username": "alice", "password": PASSWORD},
    }
    prefix = f"iam-prod-test-{uuid.uuid4().hex}"
    env = production_env(redis_url=redis_url, RATELIMIT_KEY_PREFIX=prefix)
    env.pop("DATABASE_URL")  # run_app supplies a scratch database
    try:
        results, _ = run_app([signup, {"method": "GET", "path": "/check_session"}], env, tmp_path)
    finally:  # the shared Redis keeps nothing of this run
        delete_redis_keys(redis_url, prefix)
    assert [r["status"] for r in results] == [201, 200]
    cookie = session_cookie(results[0]["set_cookie"])
    name, _, attributes = cookie.partition(";")
    assert name.startswith("__Host-session=")
    assert {"Secure", "HttpOnly", "Path=/", "SameSite=Lax"} <= {
        a.strip() for a in attributes.split(";")
    }
    assert "Domain" not in cookie and "Expires" not in cookie
    assert results[1]["headers"]["Strict-Transport-Security"].startswith("max-age=31536000")


def test_bcrypt_cost_is_4_only_in_testing():
    env = environment_without(names=("BCRYPT_LOG_ROUNDS", "SECRET_KEY"))
    for app_env, rounds in (("testing", 4), ("development", 12)):
        assert settings(Environment({**env, "APP_ENV": app_env}))["BCRYPT_LOG_ROUNDS"] == rounds
