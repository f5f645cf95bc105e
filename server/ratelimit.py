"""Rate limits over the `limits` library: moving-window counters in Redis (REDIS_URL; shared by
every worker and server) or, without it, in this process's memory.

Flask-Limiter did this before. Its per-request bookkeeping was nearly a quarter of the cost of
a cheap request (`make bench`), for features this API does not use. This module is the part the
API needs: Throttle, a limit with a key, and Counters, which keeps counting in memory while
Redis is down.
"""

import contextlib
import functools
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar, cast

import redis
from flask import Response, after_this_request, current_app
from limits import RateLimitItem, parse
from limits.storage import (
    MovingWindowSupport,
    RedisStorage,
    Storage,
    storage_from_string,
)
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from config import app

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

parse_limit = functools.lru_cache(maxsize=64)(parse)  # "5 per 15 minutes", parsed once


class SweptMemoryStorage(Storage, MovingWindowSupport):
    """limits' moving window in this process's memory (development, tests, and the fallback
    while Redis is down), built on limits' public storage interface. limits' own MemoryStorage
    drops expired entries from a timer thread it starts anew whenever none runs: under gunicorn
    that cost a tenth of a page of posts' throughput (`make bench`). Here a key's expired
    entries go when the key is used, and keys nobody uses any more once a second, inline."""

    STORAGE_SCHEME = None  # not a storage URL of its own
    SWEEP_SECONDS = 1.0

    events: dict[str, list[tuple[float, int]]]

    def __init__(self) -> None:
        super().__init__()
        self.events = {}  # key -> [(when, expiry)], newest first
        self.lock = threading.Lock()
        self.next_sweep = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def _live(self, key: str, now: float) -> list[tuple[float, int]]:
        """key's entries still in their window (the caller holds the lock)."""
        events = self.events.get(key, [])
        while events and events[-1][0] + events[-1][1] <= now:
            events.pop()
        return events

    def _sweep(self, now: float) -> None:
        if now >= self.next_sweep:
            self.next_sweep = now + self.SWEEP_SECONDS
            for key in [k for k, events in self.events.items() if not self._live(k, now)]:
                del self.events[key]

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        now = time.time()
        with self.lock:
            self._sweep(now)
            events = self._live(key, now)
            if len(events) + amount > limit:
                return False
            self.events[key] = [(now, expiry)] * amount + events
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        with self.lock:
            events = [(when, e) for when, e in self._live(key, now) if when > now - expiry]
        return (events[-1][0], len(events)) if events else (now, 0)

    def clear(self, key: str) -> None:
        with self.lock:
            self.events.pop(key, None)

    def reset(self) -> int:
        with self.lock:
            count = len(self.events)
            self.events.clear()
        return count

    def check(self) -> bool:
        return True

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("a moving-window storage only")

    def get(self, key: str) -> int:
        raise NotImplementedError("a moving-window storage only")

    def get_expiry(self, key: str) -> float:
        raise NotImplementedError("a moving-window storage only")


class InFlight:
    """The attempts at each key being judged right now, in every process. Each attempt is its
    own entry with its own deadline (SECONDS from its start): a Redis sorted set scored by
    deadline, or a dict in this process without Redis. An entry whose release was lost (a
    worker killed mid-check, Redis timing out) lapses at its deadline whatever else happens
    at that key, so lost releases can never add up."""

    SECONDS = 60  # far longer than any request may take (DATABASE_TIMEOUT, gunicorn's timeout)
    ACQUIRE = """
        local now = redis.call('TIME')
        local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
        redis.call('ZADD', KEYS[1], t + tonumber(ARGV[2]), ARGV[1])
        redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
        return redis.call('ZCARD', KEYS[1])
    """

    entries: dict[str, dict[str, float]]

    def __init__(
        self, redis_client: redis.Redis | redis.RedisCluster | None = None, prefix: str = ""
    ) -> None:
        self.prefix = prefix
        self.entries, self.lock = {}, threading.Lock()  # key -> {entry: deadline}
        self.redis = redis_client
        if redis_client is not None:
            self.acquire_script = redis_client.register_script(self.ACQUIRE)

    def acquire(self, key: str) -> tuple[str, int]:
        """Add an attempt at key; (its entry, how many are in progress, this one included)."""
        entry = uuid.uuid4().hex
        if self.redis is not None:
            count = self.acquire_script([self.prefix + key], [entry, self.SECONDS])
            return entry, int(count)
        now = time.monotonic()
        with self.lock:
            entries = {e: d for e, d in self.entries.get(key, {}).items() if d > now}
            entries[entry] = now + self.SECONDS
            self.entries[key] = entries
            return entry, len(entries)

    def release(self, key: str, entry: str) -> None:
        if self.redis is not None:
            self.redis.zrem(self.prefix + key, entry)
            return
        with self.lock:
            entries = self.entries.get(key, {})
            entries.pop(entry, None)
            if not entries:
                self.entries.pop(key, None)

    def reset(self) -> None:
        with self.lock:
            self.entries.clear()
        if self.redis is not None:
            keys = list(self.redis.scan_iter(self.prefix + "*"))
            if keys:
                self.redis.delete(*keys)


@dataclass(frozen=True)
class Backend:
    limiter: MovingWindowRateLimiter
    in_flight: InFlight


class Counters:
    """Hits against the storage. While Redis fails, this process counts in memory (a limit per
    process, not an outage) and tries Redis again every RETRY_SECONDS."""

    RETRY_SECONDS = 5

    def __init__(self, storage: Storage, in_flight: InFlight) -> None:
        self.backend = Backend(MovingWindowRateLimiter(storage), in_flight)
        self.fallback: Backend | None = None
        if not isinstance(storage, SweptMemoryStorage):
            self.fallback = Backend(MovingWindowRateLimiter(SweptMemoryStorage()), InFlight())
        self.retry_at = 0.0  # while the storage is failing: when to try it again

    def _run(self, operation: Callable[[Backend], T]) -> T:
        """operation(backend) on Redis, or on this process's memory while Redis fails."""
        was_down = self.retry_at > 0
        if was_down:
            if time.monotonic() < self.retry_at:
                # set whenever retry_at is: only a failure with a fallback sets retry_at
                return operation(cast(Backend, self.fallback))
            self.retry_at = time.monotonic() + self.RETRY_SECONDS  # one request tries Redis
        try:
            result = operation(self.backend)
        except Exception as e:
            if self.fallback is None:
                raise
            if not was_down:
                app.logger.warning(
                    "rate-limit storage unreachable (%s); falling back to in-memory storage",
                    type(e).__name__,
                )
            self.retry_at = time.monotonic() + self.RETRY_SECONDS
            return operation(self.fallback)
        if was_down:
            app.logger.warning("rate-limit storage reachable again")
            self.retry_at = 0.0
        return result

    def hit(self, limit: RateLimitItem, key: tuple[str, ...]) -> bool:
        """Count one request; False if it is over the limit (and so not counted)."""
        return self._run(lambda backend: backend.limiter.hit(limit, *key))

    def begin_attempt(
        self, limit: RateLimitItem, key: tuple[str, ...]
    ) -> Callable[[bool], None] | None:
        """Admit one attempt whose outcome decides whether it counts (a guess at a password
        counts when wrong, a sign-up when it made an account), or None when the counted ones
        in the window plus the attempts still being judged have reached the limit; else
        end(counted), to be called once it is judged: it is counted (or not), then it stops
        being in progress.

        The attempt is marked in progress before the window is read, and counted before the
        mark is removed, so concurrent attempts (other threads, workers, servers) always see
        each other: one may be counted twice for a moment, never not at all. So at most
        limit.amount attempts are ever judged in a window, however many arrive at once.
        """
        name = limit.key_for("in-flight", *key)

        def admit(backend: Backend) -> tuple[Backend, str] | None:
            entry, judging = backend.in_flight.acquire(name)
            try:
                counted = limit.amount - backend.limiter.get_window_stats(limit, *key).remaining
            except Exception:
                backend.in_flight.release(name, entry)
                raise
            if counted + judging > limit.amount:
                backend.in_flight.release(name, entry)
                return None
            return backend, entry

        admitted = self._run(admit)
        if admitted is None:
            return None
        backend, entry = admitted

        def end(count: bool) -> None:
            try:
                if count:
                    backend.limiter.hit(limit, *key)
            finally:
                backend.in_flight.release(name, entry)

        return end

    def retry_after(self, limit: RateLimitItem, key: tuple[str, ...]) -> int:
        """Whole seconds until the limit lets a request through: rounded up, plus one, since
        Redis reports the reset time to only 14 significant digits and waiting exactly this
        long must always be enough."""
        stats = self._run(lambda backend: backend.limiter.get_window_stats(limit, *key))
        return max(1, math.ceil(stats.reset_time - time.time()) + 1)

    def reset(self) -> None:
        """Forget every counter (tests)."""
        for backend in (self.backend, self.fallback):
            if backend is not None:
                backend.limiter.storage.reset()
                backend.in_flight.reset()


def make_storage() -> Storage:
    url = app.config["REDIS_URL"]
    if not url:
        return SweptMemoryStorage()
    # a synchronous storage (REDIS_URL is never one of limits.aio's)
    return cast(
        Storage,
        storage_from_string(
            url,
            key_prefix=os.environ.get("RATELIMIT_KEY_PREFIX", "iam-limits"),
            socket_connect_timeout=0.5,  # a dead Redis costs half a second, then the fallback
            socket_timeout=0.5,
        ),
    )


def make_in_flight(storage: Storage) -> InFlight:
    """In-flight counts beside the storage's counters: on its Redis connection (limits'
    RedisStorage.get_connection()), under the same key prefix; else in memory."""
    prefix = os.environ.get("RATELIMIT_KEY_PREFIX", "iam-limits") + ":in-flight/"
    if isinstance(storage, RedisStorage):
        # limits types it as its own protocol; it is redis-py's client (or cluster client)
        connection = cast(redis.Redis | redis.RedisCluster, storage.get_connection())
        return InFlight(connection, prefix)
    return InFlight()


storage = make_storage()
counters = Counters(storage, make_in_flight(storage))


class Throttle:
    """A limit, read from app.config[setting] ("5 per 15 minutes") on each request, on counters
    named by scope and key() (an address, a user, ...). Throttles with the same scope share
    their counters. Used as a view decorator (in a Resource's `decorators`), or by check().

    counts: when given, only requests whose response it approves are counted (sign-ups that
        created an account); a caller at the limit is still refused, and requests in flight
        are admitted together with the counted ones (Counters.begin_attempt), so concurrent
        requests cannot pass it.
    """

    def __init__(
        self,
        setting: str,
        scope: str,
        key: Callable[[], str],
        counts: Callable[[Response], bool] | None = None,
    ) -> None:
        self.setting, self.scope, self.key = setting, scope, key
        self.counts = counts

    def __call__(self, view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def throttled(*args: P.args, **kwargs: P.kwargs) -> R:
            self.check()
            return view(*args, **kwargs)

        return throttled

    def check(self) -> None:
        """429 (with Retry-After) if this request is over the limit; otherwise count it, or,
        with `counts`, arrange for its response to be judged."""
        config = current_app.config
        if not config["RATELIMIT_ENABLED"]:
            return
        limit, key = parse_limit(config[self.setting]), (self.scope, self.key())
        if self.counts is None:
            if not counters.hit(limit, key):
                raise TooManyRequests(retry_after=counters.retry_after(limit, key))
            return
        end = counters.begin_attempt(limit, key)  # in flight together, they cannot pass it
        if end is None:
            raise TooManyRequests(retry_after=counters.retry_after(limit, key))

        @after_this_request
        def count(response: Response) -> Response:
            end(cast(Callable[[Response], bool], self.counts)(response))  # not None: checked above
            return response


class GuessLimit:
    """A limit on wrong guesses at a secret (a password), per scope and key. Only failures
    count, but a guess is admitted before the secret is checked, together with the guesses in
    progress (Counters.begin_attempt): however many arrive at once, from any number of threads,
    workers or servers, at most the limit's amount of them are checked in a window, and the
    rest are 429s. Once it is used up even the right secret gets 429 until the window passes.
    A refusal calls on_breach(subject) first."""

    def __init__(
        self,
        setting: str,
        scope: str,
        on_breach: Callable[[str | None], None] | None = None,
    ) -> None:
        self.setting, self.scope, self.on_breach = setting, scope, on_breach


@contextlib.contextmanager
def guessing(*limits: tuple[GuessLimit, str, str | None]) -> Iterator[None]:
    """with guessing((limit, key, subject), ...): check the secret inside the block. Each limit
    admits this guess, in order, or raises 429 (nothing is counted then). Leaving the block
    normally is a right guess; an exception from it (the 401 or 403) counts as a failure."""
    config = current_app.config
    if not config["RATELIMIT_ENABLED"]:
        yield
        return
    admitted, checked = [], False
    try:
        for guess_limit, key, subject in limits:
            limit, full_key = parse_limit(config[guess_limit.setting]), (guess_limit.scope, key)
            end = counters.begin_attempt(limit, full_key)
            if end is None:
                if guess_limit.on_breach is not None:
                    guess_limit.on_breach(subject)
                raise TooManyRequests(retry_after=counters.retry_after(limit, full_key))
            admitted.append(end)
        checked = True
        yield
    except BaseException:
        finish(admitted, failed=checked)
        raise
    finish(admitted, failed=False)


def finish(ends: Iterable[Callable[[bool], None]], failed: bool) -> None:
    for end in ends:
        try:
            end(failed)
        except Exception:  # storage trouble: an in-progress mark lapses by itself
            app.logger.warning("could not record the end of a guess", exc_info=True)
