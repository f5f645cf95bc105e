"""Reading settings from environment variables, each checked when it is read.

A value a reader cannot take is noted in `problems` (the variable, the value, what it accepts)
and the default stands in meanwhile; the app then refuses to start (self_check.py) rather than
failing later, after a commit, in some request.
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import limits
from cryptography.fernet import Fernet

T = TypeVar("T")
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
BOOLEANS.update({"0": False, "false": False, "no": False, "off": False})


class Environment:
    """The variables of `environ`, read as typed settings."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def read(self, name: str, default: T, parse: Callable[[str], T], accepts: str) -> T:
        """environ[name] read by parse(), or default when unset or empty. A value parse refuses
        (ValueError) is noted in problems, and the default stands in."""
        raw = self.environ.get(name, "")
        if not raw.strip():
            return default
        try:
            return parse(raw.strip())
        except ValueError:
            self.problems.append(f"{name}={raw[:100]!r} is not {accepts}")
            return default

    def text(self, name: str, default: str = "") -> str:
        return self.environ.get(name, default)

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        """One of choices, in any letter case, as the choice spells it."""
        by_lower = {choice.lower(): choice for choice in choices}

        def parse(value: str) -> str:
            if value.lower() not in by_lower:
                raise ValueError(value)
            return by_lower[value.lower()]

        return self.read(name, default, parse, "one of " + ", ".join(choices))

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int = 2**31 - 1) -> int:
        def parse(value: str) -> int:
            number = int(value)
            if not minimum <= number <= maximum:
                raise ValueError(value)
            return number

        return self.read(name, default, parse, f"a whole number from {minimum} to {maximum}")

    def boolean(self, name: str, default: bool) -> bool:
        def parse(value: str) -> bool:
            if value.lower() not in BOOLEANS:
                raise ValueError(value)
            return BOOLEANS[value.lower()]

        return self.read(name, default, parse, "true or false (1/0, yes/no, on/off)")

    def words(self, name: str, default: Sequence[str]) -> list[str]:
        """A comma-separated list of words (roles, say), or default when unset or empty."""
        items = [item.strip() for item in self.environ.get(name, "").split(",") if item.strip()]
        return items or list(default)

    def fernet_keys(self, name: str, default: Sequence[str]) -> list[str]:
        """Comma-separated Fernet keys (the first encrypts, every one decrypts), or default."""

        def parse(value: str) -> list[str]:
            keys = [key.strip() for key in value.split(",") if key.strip()]
            for key in keys:
                Fernet(key.encode())  # ValueError if it is not one
            return keys

        accepts = "a Fernet key (or several, comma-separated) such as Fernet.generate_key() makes"
        return self.read(name, list(default), parse, accepts)

    def origins(self, name: str) -> list[str]:
        """A comma-separated list, each entry without a trailing slash (checked by self_check)."""
        items = self.environ.get(name, "").split(",")
        return [item.strip().rstrip("/") for item in items if item.strip()]

    def seconds(self, name: str, default: timedelta) -> timedelta:
        return timedelta(seconds=self.integer(name, int(default.total_seconds()), minimum=1))

    def limit(self, name: str, default: str) -> str:
        """A rate limit such as "5 per 15 minutes" (the limits library's notation)."""

        def parse(value: str) -> str:
            limits.parse(value)  # ValueError if it cannot
            return value

        return self.read(name, default, parse, 'a limit such as "5 per 15 minutes"')

    def url(self, name: str, default: str, schemes: Sequence[str]) -> str:
        """A URL with one of schemes and a host (or, for sqlite and unix sockets, a path)."""

        def parse(value: str) -> str:
            parts = urlsplit(value)
            if parts.scheme not in schemes or not (parts.netloc or parts.path):
                raise ValueError(value)
            if parts.scheme in ("http", "https") and not parts.hostname:
                raise ValueError(value)
            parts.port  # noqa: B018 (ValueError for a port that is not a number or out of range)
            return value

        accepts = "a URL starting " + " or ".join(f"{s}://" for s in schemes)
        return self.read(name, default, parse, accepts)
