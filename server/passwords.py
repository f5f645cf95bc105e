"""Password hashing and the password policy.

bcrypt reads only 72 bytes, so the password is first reduced with a keyed HMAC-SHA384: every
character counts, up to the 1024 the API accepts, and a leaked database cannot be "shucked"
with other sites' unsalted hashes. The cost comes from BCRYPT_LOG_ROUNDS at each call, so a
raised cost applies to new hashes at once and to old ones at their owner's next login.
"""

import base64
import hashlib
import hmac
from functools import cache
from typing import TYPE_CHECKING, cast

from flask import current_app

from bounds import PASSWORD_MAX_LENGTH
from config import bcrypt

if TYPE_CHECKING:  # models imports this module
    from models import User


def _prehash(password: str) -> bytes:
    """base64(HMAC-SHA384) is 64 ASCII bytes: under bcrypt's 72, and keyed against shucking."""
    key = current_app.config["PASSWORD_PEPPER"].encode() or b"flask-iam-api/password/v1"
    return base64.b64encode(hmac.new(key, password.encode(), hashlib.sha384).digest())


def hash_password(password: str) -> str:
    rounds = current_app.config["BCRYPT_LOG_ROUNDS"]
    password_hash: str = bcrypt.generate_password_hash(_prehash(password), rounds).decode()
    return password_hash


def check_password(password_hash: str, password: str) -> bool:
    matches: bool = bcrypt.check_password_hash(password_hash, _prehash(password))
    return matches


def hash_cost(password_hash: str) -> int:
    """The cost a bcrypt hash was made at: $2b$12$... is 12."""
    return int(password_hash.split("$")[2])


def needs_rehash(user: "User") -> bool:
    """Was the user's hash made at another BCRYPT_LOG_ROUNDS than today's? (A raised cost makes
    old hashes weak; a lowered one makes them slower to check than a name nobody has.)"""
    return user.password_cost != cast(int, current_app.config["BCRYPT_LOG_ROUNDS"])


@cache
def _dummy_hash(rounds: int) -> str:
    password_hash: str = bcrypt.generate_password_hash(b"no such user", rounds).decode()
    return password_hash


def password_matches(user: "User | None", password: str) -> bool:
    """The bcrypt work of one check at today's BCRYPT_LOG_ROUNDS, whether or not the user exists
    and however old their hash, so timing tells nothing. bcrypt's work doubles with each step of
    cost: a hash made at 12 before the cost was raised to 14 is checked (2^12), then made up for
    with dummy checks at 12 and 13 (2^12 + 2^13), which is 2^14, what a name nobody has costs."""
    rounds = current_app.config["BCRYPT_LOG_ROUNDS"]
    if user is None:
        check_password(_dummy_hash(rounds), password)
        return False
    matches = user.authenticate(password)
    for cost in range(user.password_cost, rounds):
        check_password(_dummy_hash(cost), password)
    return matches


@cache
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # 30,000 passwords seen most in breaches

    return frozenset(FREQUENCY_LISTS["passwords"])


def password_problem(
    password: str, username: str | None = None, email: str | None = None
) -> str | None:
    """The first rule this password breaks, as a sentence, or None. No composition rules."""
    config = current_app.config
    if len(password) < config["PASSWORD_MIN_LENGTH"]:
        return f"Must be at least {config['PASSWORD_MIN_LENGTH']} characters."
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"Must be at most {PASSWORD_MAX_LENGTH} characters."
    folded = password.casefold()
    personal = [value for value in (username, email, email and email.split("@")[0]) if value]
    if any(folded == value.casefold() for value in personal):
        return "Must not be your username or email address."
    if folded in _common_passwords():
        return "This is one of the most commonly used passwords."
    if len(password) <= 72:  # zxcvbn's limit; longer passwords are strong by length alone
        from zxcvbn import zxcvbn

        if zxcvbn(password, user_inputs=personal)["score"] < 2:
            return "Too easy to guess: avoid common words, names, dates, repeats and keyboard runs."
    return None
