"""Every setting is checked when the app starts, in every environment: a value it cannot take
stops it with one line naming the variable and what it accepts, instead of a 500 later (once,
after an account had been committed)."""

import pytest

from services import environment_without
from test_production import problems, production_env, start

DEVELOPMENT = environment_without(
    ("RATELIMIT_", "REDIS_", "CORS_", "SESSION_", "MAIL_", "FRONTEND_")
)


@pytest.mark.parametrize(
    "name, value, accepts",
    [
        ("SESSION_COOKIE_SAMESITE", "Lax,Strict", "is not one of Lax, Strict, None"),
        ("APP_ENV", "prod", "is not one of development, production, testing"),
        ("BCRYPT_LOG_ROUNDS", "twelve", "is not a whole number from 4 to 31"),
        ("BCRYPT_LOG_ROUNDS", "40", "is not a whole number from 4 to 31"),
        ("PASSWORD_MIN_LENGTH", "0", "is not a whole number from 1 to 1024"),
        ("SESSION_IDLE_TIMEOUT", "-5", "is not a whole number from 1 to"),
        ("SESSION_LIFETIME", "1.5", "is not a whole number from 1 to"),
        ("MAIL_PORT", "99999", "is not a whole number from 1 to 65535"),
        ("TRUSTED_PROXY_COUNT", "one", "is not a whole number from 0 to 10"),
        ("DATABASE_TIMEOUT", "0", "is not a whole number from 1 to 3600"),
        ("MAIL_USE_TLS", "maybe", "is not true or false"),
        ("RATELIMIT_ENABLED", "nope", "is not true or false"),
        ("SESSION_COOKIE_SECURE", "sure", "is not true or false"),
        ("RATELIMIT_SIGNUP", "lots", 'is not a limit such as "5 per 15 minutes"'),
        ("RATELIMIT_LOGIN_ACCOUNT", "5 per fortnight", "is not a limit such as"),
        ("RATELIMIT_DEFAULT", "300/minute;", "is not a limit such as"),
        ("REDIS_URL", "localhost:6379", "is not a URL starting redis://"),
        ("REDIS_URL", "unix:///run/redis.sock", "is not a URL starting redis://"),
        ("FRONTEND_URL", "app.example.com", "is not a URL starting http:// or https://"),
        ("FRONTEND_URL", "https://", "is not a URL starting http:// or https://"),
        ("FRONTEND_URL", "https://app.example.com:99999", "is not a URL starting"),
        ("DATABASE_URL", "mysql://db/app", "is not a URL starting sqlite://"),
    ],
)
@pytest.mark.parametrize("environment", ["development", "production"])
def test_a_value_a_setting_cannot_take_is_refused_naming_it(name, value, accepts, environment):
    if environment == "production":
        env = production_env(**{name: value})
    else:
        env = {**DEVELOPMENT, "APP_ENV": "development", name: value}
    found = problems(env)
    assert any(f"{name}={value!r} {accepts}" in problem for problem in found), found


def test_samesite_none_needs_secure_cookies():
    env = {**DEVELOPMENT, "APP_ENV": "development", "SESSION_COOKIE_SAMESITE": "none"}
    found = problems(env)
    assert len(found) == 1
    assert "SESSION_COOKIE_SAMESITE=None needs SESSION_COOKIE_SECURE=true" in found[0]
    assert problems({**env, "SESSION_COOKIE_SECURE": "true"}) == []


@pytest.mark.parametrize(
    "name, value",
    [
        ("SESSION_COOKIE_SAMESITE", "strict"),
        ("MAIL_USE_TLS", "YES"),
        ("RATELIMIT_SIGNUP", "20/hour"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0"),
        ("REDIS_URL", "redis+unix:///run/redis.sock"),
        ("REDIS_URL", "redis+sentinel://127.0.0.1:26379/mymaster"),
        ("FRONTEND_URL", "https://app.example.com/"),
        ("DATABASE_URL", "postgres://u:p@db/app"),
        ("BCRYPT_LOG_ROUNDS", ""),  # empty is unset: the default
    ],
)
def test_good_values_are_taken(name, value):
    assert problems({**DEVELOPMENT, "APP_ENV": "development", name: value}) == []


@pytest.mark.parametrize(
    "name, value",
    [
        ("REDIS_URL", "redis+unix:///run/redis.sock"),
        ("REDIS_URL", "redis+sentinel://127.0.0.1:26379/mymaster"),
        ("DATABASE_URL", "postgres://u:p@db/app"),
    ],
)
def test_values_only_a_library_reads_start_the_app(name, value):
    """These reach the limits library and SQLAlchemy when the app is made: the app starts."""
    code, lines = start({**DEVELOPMENT, "APP_ENV": "development", name: value})
    assert code == 0, lines
