"""Per-user rate limits: how many requests of one kind (feed pages, mutations, reads) a
user may send per minute.

Two implementations of one small protocol (``await limiter.allow(user_id)``):

* :class:`LocalRateLimiter`, one process: a token bucket per user, ``rate_per_minute``
  sustained with bursts of a tenth of it. Buckets live in a cachetools ``TTLCache``:
  at most ``max_users`` users, and an idle user's bucket is forgotten once it would have
  refilled (a forgotten bucket and a full one behave alike), so memory stays bounded
  however many users come and go. With N workers each enforces its own limit.
* :class:`RedisRateLimiter`, every worker of every host (``HUNCH_SESSION_STORE=redis``):
  a fixed one-minute window per user counted in Redis by one Lua script (``INCR``, and
  ``EXPIRE`` on a window's first request), one ``EVALSHA`` per check: a ``MULTI``/
  ``INCR``/``EXPIRE``/``EXEC`` pipeline was also one round trip but four commands to
  build, send and parse (about 360 us of a worker's CPU per check against 200 us, measured
  on redis.asyncio at load 3-4 on 2 cores). A fixed window lets a user send up to twice
  the rate across a window boundary; a sliding log would cost a sorted set per user and
  request, which a feed page cannot afford. When Redis fails the worker falls back to its
  own buckets: the limits still hold per worker, and the feed does not fail because the
  limiter did.

Daily quotas (poll writes, follow changes) are :mod:`gateway.daily_quota`: a window of
24 hours rather than a minute, shared by a host's workers even without Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from cachetools import TTLCache

from gateway import metrics

log = logging.getLogger(__name__)

# Users whose buckets one worker keeps. A bucket is a key and two floats in the cache
# (~250 bytes with its bookkeeping): 100k users of one worker in ~25 MB. Past that the
# least recently used bucket is forgotten, i.e. that user starts again with a full burst.
RATE_LIMIT_MAX_USERS = 100_000
# Redis keys live a window and this much longer, so a window's count is never dropped
# before the window ends on a host whose clock runs a little behind.
REDIS_WINDOW_SLACK_SECONDS = 60
# A rate check is one round trip (~1-2 ms here); 0.2 s means Redis is in trouble.
REDIS_TIMEOUT_SECONDS = 0.2
# After a failed check, this worker's own buckets answer for this long before Redis is
# asked again.
REDIS_RETRY_SECONDS = 5.0
WINDOW_SECONDS = 60
# Counts one request in the window's key and returns the count. Atomic, as a script is:
# the key gets its expiry with its first count, so no key lives without one. The key
# names its window, so it never needs a later EXPIRE.
_COUNT_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""

class RateLimiter(Protocol):
    async def allow(self, user_id: str) -> bool:
        """Count one request of ``user_id``; False when it is over the limit."""

    def retry_after(self, user_id: str) -> float:
        """Seconds until ``user_id`` may send a request again (0 when now), as this
        limiter knows it without a round trip: what a refused client is told."""



class Quota(RateLimiter, Protocol):
    """A daily quota (gateway/daily_quota.py): a limiter that gives back what it charged
    for an action that was not carried out (it charges only what was done)."""

    async def refund(self, user_id: str) -> None:
        """Give back one request counted by :meth:`allow` that was not carried out."""


class LocalRateLimiter:
    """A token bucket per user in this process (see the module docstring)."""

    def __init__(self, rate_per_minute: int, *, max_users: int = RATE_LIMIT_MAX_USERS,
                 clock: Callable[[], float] = time.monotonic,
                 window_seconds: float = WINDOW_SECONDS, burst: float | None = None):
        """``rate_per_minute`` requests per ``window_seconds`` (a minute unless said)
        sustained, in bursts of ``burst`` (a tenth of the rate, at least 10, unless said;
        the document rate takes the whole minute's worth at once)."""
        if rate_per_minute < 1:
            raise ValueError(f"rate_per_minute must be at least 1, got {rate_per_minute}")
        self.rate = rate_per_minute / float(window_seconds)
        self.burst = float(burst) if burst is not None else max(10.0, rate_per_minute / 10.0)
        self._clock = clock
        # An entry idle for longer than a full refill takes would be a full bucket again.
        self._buckets: TTLCache[str, tuple[float, float]] = TTLCache(
            maxsize=max_users, ttl=self.burst / self.rate, timer=clock)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._buckets.expire()
            return len(self._buckets)

    def allow_now(self, user_id: str) -> bool:
        """:meth:`allow`, synchronously (no I/O here)."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(user_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[user_id] = (tokens - 1.0 if allowed else tokens, now)
            return allowed

    async def allow(self, user_id: str) -> bool:
        return self.allow_now(user_id)

    def retry_after(self, user_id: str) -> float:
        """Until the user's bucket holds a whole token again."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(user_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        return max(0.0, (1.0 - tokens) / self.rate)


class RedisRateLimiter:
    """A fixed one-minute window per user in Redis, shared by every worker and host."""

    def __init__(self, url: str, scope: str, rate_per_minute: int,
                 fallback: LocalRateLimiter | None = None,
                 clock: Callable[[], float] = time.time,
                 window_seconds: int = WINDOW_SECONDS):
        self.url = url
        self.scope = scope
        self.rate_per_minute = rate_per_minute  # per window_seconds
        self.window_seconds = window_seconds
        # `is not None`, not `or`: an empty LocalRateLimiter has len 0, is falsy, and the
        # daily quota's own fallback was replaced by a per-minute one (helper-66).
        self.fallback = (fallback if fallback is not None
                         else LocalRateLimiter(rate_per_minute))
        self._client = None  # made in the event loop that uses it (redis.asyncio)
        self._count_in_window = None  # the script, registered with that client
        self._degraded = False
        self._failed_at: float | None = None  # monotonic time of the last failed call
        self._clock = clock  # the wall clock: every host must agree on the window

    async def allow(self, user_id: str) -> bool:
        import redis.asyncio as redis
        from redis.exceptions import RedisError

        window = int(self._clock() // self.window_seconds)
        key = f"hunch:rate:{self.scope}:{user_id}:{window}"
        if (self._failed_at is not None
                and time.monotonic() - self._failed_at < REDIS_RETRY_SECONDS):
            # Left alone a while after a failure: a hung Redis cost every request its
            # whole timeout (helper-66); this worker's buckets hold the limits meanwhile.
            return self.fallback.allow_now(user_id)
        try:
            if self._client is None:
                # Bounded waits: a Redis that hangs (rather than refuses) must fall
                # back to the local limiter, not stall every request behind it.
                self._client = redis.Redis.from_url(
                    self.url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
                # EVALSHA; loaded again by itself when Redis lost it (a restart)
                self._count_in_window = self._client.register_script(_COUNT_IN_WINDOW)
            count = await self._count_in_window(
                keys=[key], args=[self.window_seconds + REDIS_WINDOW_SLACK_SECONDS])
        except (RedisError, OSError) as exc:
            self._failed_at = time.monotonic()
            metrics.FALLBACKS.labels(f"rate-limit-{self.scope}", type(exc).__name__).inc()
            if not self._degraded:
                log.warning("rate limits fall back to this worker's own (Redis: %s)", exc)
                self._degraded = True
            return self.fallback.allow_now(user_id)
        self._failed_at = None
        if self._degraded:
            log.info("rate limits are shared through Redis again")
            self._degraded = False
        return int(count) <= self.rate_per_minute

    def retry_after(self, user_id: str) -> float:
        """Until the next window starts (this worker's buckets while Redis is down)."""
        if self._degraded:
            return self.fallback.retry_after(user_id)
        return self.window_seconds - self._clock() % self.window_seconds

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._count_in_window = None


def make_rate_limiter(scope: str, rate_per_minute: int, session_store: str,
                      redis_url: str) -> RateLimiter:
    """The limiter for one kind of request (``scope``: "feed", "mutation", "read"): shared
    through Redis when the feed sessions are (several hosts), else this worker's own."""
    if session_store == "redis":
        return RedisRateLimiter(redis_url, scope, rate_per_minute)
    return LocalRateLimiter(rate_per_minute)

