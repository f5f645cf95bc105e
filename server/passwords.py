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

from flask import current_app

from config import bcrypt


def _prehash(password):
    """base64(HMAC-SHA384) is 64 ASCII bytes: under bcrypt's 72, and keyed against shucking."""
    key = current_app.config["PASSWORD_PEPPER"].encode() or b"flask-iam-api/password/v1"
    return base64.b64encode(hmac.new(key, password.encode(), hashlib.sha384).digest())


def hash_password(password):
    rounds = current_app.config["BCRYPT_LOG_ROUNDS"]
    return bcrypt.generate_password_hash(_prehash(password), rounds).decode()


def check_password(password_hash, password):
    return bcrypt.check_password_hash(password_hash, _prehash(password))


def needs_rehash(password_hash):
    return int(password_hash.split("$")[2]) < current_app.config["BCRYPT_LOG_ROUNDS"]


@cache
def _dummy_hash(rounds):
    return bcrypt.generate_password_hash(b"no such user", rounds).decode()


def password_matches(user, password):
    """Exactly one bcrypt check whether or not the user exists, so timing tells nothing."""
    if user is None:
        check_password(_dummy_hash(current_app.config["BCRYPT_LOG_ROUNDS"]), password)
        return False
    return user.authenticate(password)


@cache
def _common_passwords():
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # 30,000 passwords seen most in breaches

    return frozenset(FREQUENCY_LISTS["passwords"])


def password_problem(password, username=None, email=None):
    """The first rule this password breaks, as a sentence, or None. No composition rules."""
    config = current_app.config
    if len(password) < config["PASSWORD_MIN_LENGTH"]:
        return f"Must be at least {config['PASSWORD_MIN_LENGTH']} characters."
    if len(password) > config["PASSWORD_MAX_LENGTH"]:
        return f"Must be at most {config['PASSWORD_MAX_LENGTH']} characters."
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
