"""Rate limits over the `limits` library: moving-window counters in Redis (REDIS_URL; shared by
every worker and server) or, without it, in this process's memory.

Flask-Limiter did this before. Its per-request bookkeeping was nearly a quarter of the cost of
a cheap request (`make bench`), for features this API does not use. This module is the part the
API needs: Throttle, a limit with a key, and Counters, which keeps counting in memory while
Redis is down.
"""

import functools
import math
import os
import threading
import time

from flask import after_this_request, current_app
from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from config import app

parse_limit = functools.lru_cache(maxsize=64)(parse)  # "5 per 15 minutes", parsed once


class LazyMemoryStorage(MemoryStorage):
    """limits' in-process storage, minus a thread per hit: MemoryStorage starts a Timer thread
    to drop expired entries whenever none is running, which under load is one new thread per
    request. Here the expiry sweep runs inline, at most once a second."""

    SWEEP_INTERVAL = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timer.cancel()  # the one MemoryStorage starts; sweeps happen inline from now on
        self._next_sweep = 0.0
        self._sweep_lock = threading.Lock()

    def _MemoryStorage__schedule_expiry(self):  # replaces MemoryStorage.__schedule_expiry
        now = time.monotonic()
        if now >= self._next_sweep and self._sweep_lock.acquire(blocking=False):
            try:
                self._next_sweep = now + self.SWEEP_INTERVAL
                self._MemoryStorage__expire_events()
            finally:
                self._sweep_lock.release()


class Counters:
    """Hits against the storage. While Redis fails, this process counts in memory (a limit per
    process, not an outage) and tries Redis again every RETRY_SECONDS."""

    RETRY_SECONDS = 5

    def __init__(self, storage):
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)
        self.fallback = None
        if not isinstance(storage, MemoryStorage):
            self.fallback = MovingWindowRateLimiter(LazyMemoryStorage())
        self.retry_at = 0.0  # while the storage is failing: when to try it again

    def _run(self, method, limit, key):
        was_down = self.retry_at > 0
        if was_down:
            if time.monotonic() < self.retry_at:
                return getattr(self.fallback, method)(limit, *key)
            self.retry_at = time.monotonic() + self.RETRY_SECONDS  # one request tries Redis
        try:
            result = getattr(self.limiter, method)(limit, *key)
        except Exception as e:
            if self.fallback is None:
                raise
            if not was_down:
                app.logger.warning(
                    "rate-limit storage unreachable (%s); falling back to in-memory storage",
                    type(e).__name__,
                )
            self.retry_at = time.monotonic() + self.RETRY_SECONDS
            return getattr(self.fallback, method)(limit, *key)
        if was_down:
            app.logger.warning("rate-limit storage reachable again")
            self.retry_at = 0.0
        return result

    def hit(self, limit, key):
        """Count one request; False if it is over the limit (and so not counted)."""
        return self._run("hit", limit, key)

    def test(self, limit, key):
        """Would one more request be within the limit? Counts nothing."""
        return self._run("test", limit, key)

    def retry_after(self, limit, key):
        """Whole seconds until the limit lets a request through: rounded up, plus one, since
        Redis reports the reset time to only 14 significant digits and waiting exactly this
        long must always be enough."""
        reset_at = self._run("get_window_stats", limit, key).reset_time
        return max(1, math.ceil(reset_at - time.time()) + 1)

    def reset(self):
        """Forget every counter (tests)."""
        self.storage.reset()
        if self.fallback is not None:
            self.fallback.storage.reset()


def make_storage():
    url = app.config["REDIS_URL"]
    if not url:
        return LazyMemoryStorage()
    return storage_from_string(
        url,
        key_prefix=os.environ.get("RATELIMIT_KEY_PREFIX", "iam-limits"),
        socket_connect_timeout=0.5,  # a dead Redis costs half a second, then the fallback
        socket_timeout=0.5,
    )


counters = Counters(make_storage())


class Throttle:
    """A limit, read from app.config[setting] ("5 per 15 minutes") on each request, on counters
    named by scope and key() (an address, a user, ...). Throttles with the same scope share
    their counters. Used as a view decorator (in a Resource's `decorators`), or by check().

    counts: when given, only requests whose response it approves are counted (failed logins);
        a caller at the limit is still refused everything, the right password included.
    exempt: when given and true for this request, the request is not limited.
    on_breach: called before a refusal.
    """

    def __init__(self, setting, scope, key, counts=None, exempt=None, on_breach=None):
        self.setting, self.scope, self.key = setting, scope, key
        self.counts, self.exempt, self.on_breach = counts, exempt, on_breach

    def __call__(self, view):
        @functools.wraps(view)
        def throttled(*args, **kwargs):
            self.check()
            return view(*args, **kwargs)

        return throttled

    def check(self):
        """429 (with Retry-After) if this request is over the limit; otherwise count it, or,
        with `counts`, arrange for its response to be judged."""
        config = current_app.config
        if not config["RATELIMIT_ENABLED"] or (self.exempt is not None and self.exempt()):
            return
        limit, key = parse_limit(config[self.setting]), (self.scope, self.key())
        allowed = counters.test(limit, key) if self.counts else counters.hit(limit, key)
        if not allowed:
            if self.on_breach is not None:
                self.on_breach()
            raise TooManyRequests(retry_after=counters.retry_after(limit, key))
        if self.counts is not None:

            @after_this_request
            def count(response):
                if self.counts(response):
                    counters.hit(limit, key)
                return response
