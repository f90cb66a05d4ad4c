"""Daily quotas: at most ``per_day`` actions of one kind per user in any 24 hours
(``scope`` "poll": poll writes, HUNCH_POLL_WRITES_PER_DAY; "follow": follows and
unfollows, HUNCH_FOLLOW_CHANGES_PER_DAY). The protocol is the rate limiters'
(:class:`gateway.rate_limit.Quota`): ``allow``, ``refund``, ``retry_after``.

The window. A user's actions are counted in buckets of QUOTA_BUCKET_SECONDS (15
minutes), and a check counts every bucket that overlaps the last 24 hours: the current
one and the 96 before it. Every action made in the last 24 hours is in one of those
buckets, so when a check admits an action fewer than ``per_day`` were admitted within
the 24 hours before it: **no 24 hours ever hold more than ``per_day``**, exactly (an
action leaves the count when the 24 hours after its bucket's end are over, so the price
of buckets is that a count is held up to 15 minutes longer than 24 hours, never that
more are let through). It replaces a count per fixed UTC day, which let a user make
``per_day`` actions before midnight and ``per_day`` more right after it (2x in a few
minutes), and this worker's token bucket of ``per_day`` refilled over 24 hours, which
let ``per_day`` through at once and ``per_day`` more as it refilled (2x in any 24 hours).
A sliding-window counter (two fixed days weighted by the elapsed fraction) is no better
than the fixed day in the worst case: ``per_day`` just before a boundary and, as the
weight of the old day falls, close to ``per_day`` more within the next 24 hours. An exact
log of timestamps keeps one row per action (up to ``per_day``, 1,000 follow changes);
the buckets keep at most 97 numbers per user and scope whatever ``per_day`` is, and
usually a few (one per quarter hour the user acted in).

Three stores of that one rule (pure functions below), chosen by ``make_daily_quota``:

* :class:`MemoryDailyQuota`, this worker's own: the fallback of the other two.
* :class:`SQLiteDailyQuota`, every worker of one host (``HUNCH_SESSION_STORE=sqlite``,
  the default): one file beside the feed sessions (``quotas.sqlite3``), so the quota
  holds in total however many workers serve and survives restarts and deploys (per
  worker, ``--workers N`` gave a user N times the quota and every restart a fresh one).
  A check is one transaction (``BEGIN IMMEDIATE``: read the user's buckets, decide,
  write), atomic across processes, run off the event loop: poll writes and follows are
  a rare path, and a check costs ~100 us against ~3 us in memory
  (``bench/bench_daily_quota.py``, load 6 on 2 cores).
* :class:`RedisDailyQuota`, every worker of every host (``HUNCH_SESSION_STORE=redis``):
  a hash of buckets per user and scope, checked and counted by one Lua script.

When the shared store fails (SQLite: a disk error, a lock held past the busy timeout;
Redis: down or hung) the check is answered by this worker's own buckets and counted in
``hunch_fallbacks_total{source="rate-limit-<scope>"}``; the shared store is left alone
QUOTA_RETRY_SECONDS before it is asked again. A mutation never fails because its quota's
store did: the quota then holds per worker.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cachetools import TTLCache

from gateway import metrics

log = logging.getLogger(__name__)

DAY_SECONDS = 24 * 3600
# A quarter hour: a count is held at most this much longer than 24 hours (a user told
# "retry in 24 h 10 min" rather than "24 h"), and a user's buckets are at most 97.
QUOTA_BUCKET_SECONDS = 15 * 60
_DAY_BUCKETS = DAY_SECONDS // QUOTA_BUCKET_SECONDS
# The shared file's name, beside the feed sessions' (settings.sessions_db.parent).
QUOTAS_FILE = "quotas.sqlite3"
# A check's transaction takes well under a millisecond; a write lock held for a second
# is a host in trouble, and the mutation must not wait on it longer: its worker's own
# buckets answer instead.
QUOTA_SQLITE_BUSY_SECONDS = 1.0
# After a failed check, this worker's own buckets answer for this long before the shared
# store is asked again (a hung Redis cost every request its whole timeout: helper-66).
QUOTA_RETRY_SECONDS = 5.0
# How often a worker deletes every user's buckets that left the window (each check
# deletes its own user's): the file holds only users active in the last day.
QUOTA_PRUNE_SECONDS = 3600.0
# Users whose buckets (or last refusal) one worker keeps in memory: a user's buckets are
# a dict of a few ints (~1 KB at worst); past this the least recently used is forgotten.
QUOTA_MAX_USERS = 100_000
# A check is one round trip; 0.2 s means Redis is in trouble (as the rate limiter's).
REDIS_TIMEOUT_SECONDS = 0.2
# A user's Redis hash outlives its newest bucket's window by this much (clock skew).
REDIS_SLACK_SECONDS = 60


# ------------------------------------------------------------------- the window rule


def current_bucket(now: float) -> int:
    return int(now // QUOTA_BUCKET_SECONDS)


def first_counted_bucket(now: float) -> int:
    """The oldest bucket that overlaps the 24 hours before ``now``."""
    return current_bucket(now) - _DAY_BUCKETS


def counted(buckets: Mapping[int, int], now: float) -> int:
    """The actions ``buckets`` (bucket -> count) hold within the window at ``now``."""
    first = first_counted_bucket(now)
    return sum(count for bucket, count in buckets.items() if bucket >= first)


def wait_for_one(buckets: Mapping[int, int], now: float, per_day: int) -> float:
    """Seconds from ``now`` until the window holds fewer than ``per_day`` (0 when it
    does now): the oldest buckets leave it one by one, 24 hours after each one's end."""
    total = counted(buckets, now)
    if total < per_day:
        return 0.0
    first = first_counted_bucket(now)
    for bucket in sorted(b for b in buckets if b >= first):
        total -= buckets[bucket]
        if total < per_day:
            return max(0.0, (bucket + 1) * QUOTA_BUCKET_SECONDS + DAY_SECONDS - now)
    return 0.0  # not reached: the loop ends below per_day


def bucket_to_refund(buckets: Mapping[int, int], now: float) -> int | None:
    """The bucket a refund takes one from: the latest that holds a count (the action
    being refunded was counted a moment ago), None when none does."""
    first = first_counted_bucket(now)
    held = [b for b, count in buckets.items() if b >= first and count > 0]
    return max(held) if held else None


# ------------------------------------------------------------------------- the stores


class MemoryDailyQuota:
    """The window in this worker's memory: what one process enforces alone, and the
    shared stores' fallback."""

    def __init__(self, per_day: int, *, clock: Callable[[], float] = time.time,
                 max_users: int = QUOTA_MAX_USERS):
        if per_day < 1:
            raise ValueError(f"per_day must be at least 1, got {per_day}")
        self.per_day = per_day
        self._clock = clock
        # a user idle for a whole window has nothing counted: forgetting it is exact
        self._users: TTLCache[str, dict[int, int]] = TTLCache(
            maxsize=max_users, ttl=DAY_SECONDS + QUOTA_BUCKET_SECONDS, timer=clock)
        self._lock = threading.Lock()

    def check_now(self, user_id: str) -> tuple[bool, float]:
        """Count one action if the window has room: (allowed, seconds until one more
        would be)."""
        now = self._clock()
        first = first_counted_bucket(now)
        with self._lock:
            buckets = {b: c for b, c in self._users.get(user_id, {}).items() if b >= first}
            allowed = counted(buckets, now) < self.per_day
            if allowed:
                bucket = current_bucket(now)
                buckets[bucket] = buckets.get(bucket, 0) + 1
            self._users[user_id] = buckets
            return allowed, wait_for_one(buckets, now, self.per_day)

    async def allow(self, user_id: str) -> bool:
        return self.check_now(user_id)[0]

    def refund_now(self, user_id: str) -> None:
        now = self._clock()
        with self._lock:
            buckets = self._users.get(user_id)
            bucket = None if buckets is None else bucket_to_refund(buckets, now)
            if bucket is not None:
                buckets[bucket] -= 1

    async def refund(self, user_id: str) -> None:
        self.refund_now(user_id)

    def retry_after(self, user_id: str) -> float:
        now = self._clock()
        with self._lock:
            buckets = dict(self._users.get(user_id, {}))
        return wait_for_one(buckets, now, self.per_day)

    async def close(self) -> None:
        pass


class _SharedDailyQuota:
    """What the SQLite and Redis quotas share: the fallback to this worker's buckets
    when the store fails, and the refused users' waits (``retry_after`` is asked right
    after a refusal, without another trip to the store)."""

    source = "shared"
    _errors: tuple[type[BaseException], ...] = ()

    def __init__(self, scope: str, per_day: int, fallback: MemoryDailyQuota | None,
                 clock: Callable[[], float]):
        self.scope = scope
        self.per_day = per_day
        self.fallback = fallback if fallback is not None else MemoryDailyQuota(
            per_day, clock=clock)
        self._clock = clock  # the wall clock: every worker and host must agree on buckets
        self._failed_at: float | None = None  # monotonic time of the last failure
        self._refused_until: TTLCache[str, float] = TTLCache(
            maxsize=QUOTA_MAX_USERS, ttl=DAY_SECONDS + QUOTA_BUCKET_SECONDS)

    def _resting(self) -> bool:
        return (self._failed_at is not None
                and time.monotonic() - self._failed_at < QUOTA_RETRY_SECONDS)

    def _failed(self, exc: BaseException) -> None:
        if self._failed_at is None:
            log.warning("the %s quota falls back to this worker's own count (%s: %s)",
                        self.scope, self.source, exc)
        self._failed_at = time.monotonic()
        metrics.FALLBACKS.labels(f"rate-limit-{self.scope}", type(exc).__name__).inc()

    def _ok(self) -> None:
        if self._failed_at is not None:
            log.info("the %s quota is shared through %s again", self.scope, self.source)
        self._failed_at = None

    def _answer(self, user_id: str, now: float, allowed: bool, wait: float) -> bool:
        if allowed:
            self._refused_until.pop(user_id, None)
        else:
            self._refused_until[user_id] = now + wait
        return allowed

    async def _check(self, user_id: str, now: float) -> tuple[bool, float]:
        raise NotImplementedError

    async def _give_back(self, user_id: str, now: float) -> None:
        raise NotImplementedError

    async def allow(self, user_id: str) -> bool:
        now = self._clock()
        if not self._resting():
            try:
                allowed, wait = await self._check(user_id, now)
            except self._errors as exc:
                self._failed(exc)
            else:
                self._ok()
                return self._answer(user_id, now, allowed, wait)
        return self._answer(user_id, now, *self.fallback.check_now(user_id))

    async def refund(self, user_id: str) -> None:
        """One count back (never below zero), where it was most likely counted."""
        if not self._resting():
            try:
                await self._give_back(user_id, self._clock())
            except self._errors as exc:
                self._failed(exc)
            else:
                self._refused_until.pop(user_id, None)
                return
        self.fallback.refund_now(user_id)
        self._refused_until.pop(user_id, None)

    def retry_after(self, user_id: str) -> float:
        """Until one more is allowed, as the user's last refusal here said."""
        until = self._refused_until.get(user_id)
        return 0.0 if until is None else max(0.0, until - self._clock())


class SQLiteDailyQuota(_SharedDailyQuota):
    """The window in a SQLite file shared by the workers of one host (module docstring)."""

    source = "SQLite"
    _errors = (sqlite3.Error, OSError)

    def __init__(self, path: str | Path, scope: str, per_day: int,
                 fallback: MemoryDailyQuota | None = None, *,
                 clock: Callable[[], float] = time.time,
                 busy_timeout: float = QUOTA_SQLITE_BUSY_SECONDS):
        super().__init__(scope, per_day, fallback, clock)
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._pruned_at: float | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            from recsys.sqlite_wal import enable_wal

            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                   check_same_thread=False, isolation_level=None)
            try:
                enable_wal(conn, timeout_s=self.busy_timeout)
                # WAL with NORMAL: a worker's crash loses nothing; a power cut may lose
                # the last counts, which a quota can afford.
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("CREATE TABLE IF NOT EXISTS quota_counts ("
                             "scope TEXT NOT NULL, user_id TEXT NOT NULL, "
                             "bucket INTEGER NOT NULL, count INTEGER NOT NULL, "
                             "PRIMARY KEY (scope, user_id, bucket)) WITHOUT ROWID")
                conn.execute("CREATE INDEX IF NOT EXISTS quota_counts_bucket "
                             "ON quota_counts (bucket)")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _in_transaction(self, work: Callable[[sqlite3.Connection], object]) -> object:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")  # the write lock first: no two workers decide at once
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    def _buckets(self, conn: sqlite3.Connection, user_id: str, now: float) -> dict[int, int]:
        first = first_counted_bucket(now)
        conn.execute("DELETE FROM quota_counts WHERE scope = ? AND user_id = ? AND bucket < ?",
                     (self.scope, user_id, first))
        if self._pruned_at is None or now - self._pruned_at >= QUOTA_PRUNE_SECONDS:
            conn.execute("DELETE FROM quota_counts WHERE bucket < ?", (first,))
            self._pruned_at = now
        return dict(conn.execute(
            "SELECT bucket, count FROM quota_counts WHERE scope = ? AND user_id = ?",
            (self.scope, user_id)).fetchall())

    def check_sync(self, user_id: str, now: float) -> tuple[bool, float]:
        """One check, in one transaction (blocking: ``allow`` runs it in a thread)."""
        def work(conn: sqlite3.Connection) -> tuple[bool, float]:
            buckets = self._buckets(conn, user_id, now)
            allowed = counted(buckets, now) < self.per_day
            if allowed:
                bucket = current_bucket(now)
                conn.execute(
                    "INSERT INTO quota_counts (scope, user_id, bucket, count) "
                    "VALUES (?, ?, ?, 1) ON CONFLICT (scope, user_id, bucket) "
                    "DO UPDATE SET count = count + 1", (self.scope, user_id, bucket))
                buckets[bucket] = buckets.get(bucket, 0) + 1
            return allowed, wait_for_one(buckets, now, self.per_day)

        return self._in_transaction(work)  # type: ignore[return-value]

    def refund_sync(self, user_id: str, now: float) -> None:
        def work(conn: sqlite3.Connection) -> None:
            bucket = bucket_to_refund(self._buckets(conn, user_id, now), now)
            if bucket is not None:
                conn.execute("UPDATE quota_counts SET count = count - 1 WHERE scope = ? "
                             "AND user_id = ? AND bucket = ? AND count > 0",
                             (self.scope, user_id, bucket))

        self._in_transaction(work)

    async def _check(self, user_id: str, now: float) -> tuple[bool, float]:
        return await asyncio.to_thread(self.check_sync, user_id, now)

    async def _give_back(self, user_id: str, now: float) -> None:
        await asyncio.to_thread(self.refund_sync, user_id, now)

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# Checks a user's buckets and counts one action in the current bucket if the window has
# room: {} when counted, else the window's buckets (field, count, ...) for the wait. One
# script: atomic, one round trip; buckets that left the window are deleted on the way.
_CHECK = """
local first = tonumber(ARGV[1])
local counts = redis.call('HGETALL', KEYS[1])
local total = 0
local kept = {}
for i = 1, #counts, 2 do
  if tonumber(counts[i]) < first then
    redis.call('HDEL', KEYS[1], counts[i])
  else
    total = total + tonumber(counts[i + 1])
    kept[#kept + 1] = counts[i]
    kept[#kept + 1] = counts[i + 1]
  end
end
if total < tonumber(ARGV[3]) then
  redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {}
end
return kept
"""

# One count back from the latest bucket in the window that holds one (none: nothing).
_GIVE_BACK = """
local first = tonumber(ARGV[1])
local counts = redis.call('HGETALL', KEYS[1])
local latest, field = nil, nil
for i = 1, #counts, 2 do
  local bucket = tonumber(counts[i])
  if bucket >= first and tonumber(counts[i + 1]) > 0 and (latest == nil or bucket > latest) then
    latest, field = bucket, counts[i]
  end
end
if field == nil then return 0 end
if redis.call('HINCRBY', KEYS[1], field, -1) <= 0 then redis.call('HDEL', KEYS[1], field) end
return 1
"""


class RedisDailyQuota(_SharedDailyQuota):
    """The window in Redis, shared by every worker of every host (module docstring)."""

    source = "Redis"

    def __init__(self, url: str, scope: str, per_day: int,
                 fallback: MemoryDailyQuota | None = None, *,
                 clock: Callable[[], float] = time.time):
        from redis.exceptions import RedisError

        super().__init__(scope, per_day, fallback, clock)
        self._errors = (RedisError, OSError)
        self.url = url
        self._client = None  # made in the event loop that uses it (redis.asyncio)
        self._check_script = None
        self._give_back_script = None

    def _key(self, user_id: str) -> str:
        return f"hunch:quota:{self.scope}:{user_id}"

    def _redis(self):
        if self._client is None:
            import redis.asyncio as redis

            # Bounded waits: a Redis that hangs must fall back, not stall the mutation.
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
            # EVALSHA; loaded again by itself when Redis lost it (a restart)
            self._check_script = self._client.register_script(_CHECK)
            self._give_back_script = self._client.register_script(_GIVE_BACK)
        return self._client

    async def _check(self, user_id: str, now: float) -> tuple[bool, float]:
        self._redis()
        kept = await self._check_script(
            keys=[self._key(user_id)],
            args=[first_counted_bucket(now), current_bucket(now), self.per_day,
                  DAY_SECONDS + QUOTA_BUCKET_SECONDS + REDIS_SLACK_SECONDS])
        if not kept:
            return True, 0.0
        buckets = {int(kept[i]): int(kept[i + 1]) for i in range(0, len(kept), 2)}
        return False, wait_for_one(buckets, now, self.per_day)

    async def _give_back(self, user_id: str, now: float) -> None:
        self._redis()
        await self._give_back_script(keys=[self._key(user_id)],
                                     args=[first_counted_bucket(now)])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._check_script = self._give_back_script = None


def make_daily_quota(scope: str, per_day: int, session_store: str, redis_url: str,
                     directory: Path | None = None, *,
                     clock: Callable[[], float] = time.time
                     ) -> MemoryDailyQuota | SQLiteDailyQuota | RedisDailyQuota:
    """At most ``per_day`` actions of a kind (``scope``) per user in any 24 hours,
    shared as the feed sessions are: through Redis when they are (every host), else
    through ``directory / QUOTAS_FILE`` (the host's workers; pass the sessions' folder),
    else (no directory) this process's own."""
    local = MemoryDailyQuota(per_day, clock=clock)
    if session_store == "redis":
        return RedisDailyQuota(redis_url, scope, per_day, fallback=local, clock=clock)
    if directory is not None:
        return SQLiteDailyQuota(Path(directory) / QUOTAS_FILE, scope, per_day,
                                fallback=local, clock=clock)
    return local
