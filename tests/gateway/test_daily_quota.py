"""Daily quotas (gateway/daily_quota.py): never more than the quota in any 24 hours,
midnight included; shared by the workers of one host through one SQLite file, kept
across restarts; refunds; a failing file falls back to the worker's own count."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway import daily_quota, metrics
from gateway.daily_quota import (
    DAY_SECONDS,
    QUOTA_BUCKET_SECONDS,
    QUOTAS_FILE,
    MemoryDailyQuota,
    SQLiteDailyQuota,
    make_daily_quota,
)
from tests.integration.test_redis_sessions import redis_url  # noqa: F401 - the fixture

MIDNIGHT = 1_800_057_600.0  # 2027-01-15 00:00:00 UTC
assert MIDNIGHT % DAY_SECONDS == 0


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    """Makes a quota of each store on one clock; every quota made by one test shares
    the store (the same SQLite file, the same Redis), as a host's workers do. A test
    closes them in its event loop (``await make.close_all()``)."""
    made = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    scope = f"t{random.Random(request.node.name).randrange(10**9)}"  # Redis outlives tests

    def make(per_day: int, clock: Clock):
        quota = make_daily_quota(scope, per_day, "redis" if request.param == "redis"
                                 else "sqlite", url,
                                 None if request.param == "memory" else tmp_path,
                                 clock=clock)
        made.append(quota)
        return quota

    async def close_all():
        for quota in made:
            await quota.close()

    make.close_all = close_all
    return make


def _run(coroutine):
    return asyncio.run(coroutine)


def test_midnight_does_not_give_a_second_quota(store):
    """A count per UTC day let a user write the quota at 23:50 and again at 00:05: 2x in
    fifteen minutes. Now the writes before midnight count until 24 hours after their
    quarter hour."""
    clock = Clock(MIDNIGHT - 600)  # 23:50
    quota = store(3, clock)

    async def main():
        assert [await quota.allow("ann") for _ in range(3)] == [True] * 3
        clock.now = MIDNIGHT + 300  # 00:05, the next UTC day
        assert not await quota.allow("ann")
        # they leave at the end of their quarter hour (midnight) plus a day
        assert quota.retry_after("ann") == DAY_SECONDS - 300
        clock.now = MIDNIGHT + DAY_SECONDS - 1
        assert not await quota.allow("ann")
        clock.now = MIDNIGHT + DAY_SECONDS
        assert [await quota.allow("ann") for _ in range(4)] == [True] * 3 + [False]
        assert await quota.allow("bob")  # per user
        await store.close_all()

    _run(main())


def test_no_24_hours_ever_hold_more_than_the_quota(store):
    """Three days of one user's attempts at random moments (bursts and pauses): any 24
    hours hold at most the quota of allowed ones. A bucket refilled over the day let
    the quota through at once and the quota again as it refilled."""
    per_day = 5
    clock = Clock(MIDNIGHT - 7 * 3600)
    quota = store(per_day, clock)
    rng = random.Random(13)
    allowed_at: list[float] = []

    async def main():
        while clock.now < MIDNIGHT + 2 * DAY_SECONDS:
            if await quota.allow("ann"):
                allowed_at.append(clock.now)
            clock.now += rng.choice([1.0, 30.0, 600.0, 3_600.0, 5 * 3_600.0])
        await store.close_all()

    _run(main())
    for t in allowed_at:
        within = [a for a in allowed_at if t - DAY_SECONDS < a <= t]
        assert len(within) <= per_day, (t, within)
    assert len(allowed_at) >= 2 * per_day  # and the quota comes back day after day


@pytest.mark.parametrize("store", ["sqlite", "redis"], indirect=True)
def test_refunds_give_back_one_of_the_hosts_count_never_below_zero(store):
    """A write the store refused costs nothing, whichever worker counted it; a refund
    with nothing counted gives nothing (no credit for later)."""
    clock = Clock(MIDNIGHT + 1_000)
    counting, refunding = store(2, clock), store(2, clock)

    async def main():
        for _ in range(3):
            await refunding.refund("cy")  # nothing counted: nothing to give back
        assert [await counting.allow("cy") for _ in range(3)] == [True, True, False]
        await refunding.refund("cy")
        assert refunding.retry_after("cy") == 0.0
        assert [await refunding.allow("cy") for _ in range(2)] == [True, False]
        assert not await counting.allow("cy")
        assert 0 < counting.retry_after("cy") <= DAY_SECONDS + QUOTA_BUCKET_SECONDS
        await store.close_all()

    _run(main())


def test_two_workers_on_one_file_hold_the_quota_in_total(tmp_path):
    """Two quotas on one file, as two uvicorn workers of a host: per worker, each let
    the user make the whole quota (N workers, N times the quota)."""
    clock = Clock(MIDNIGHT + 5_000)
    workers = [make_daily_quota("follow", 4, "sqlite", "", tmp_path, clock=clock)
               for _ in range(2)]

    async def main():
        answers = [await workers[k % 2].allow("dee") for k in range(6)]
        assert answers == [True] * 4 + [False] * 2
        assert all(w.retry_after("dee") > 0 for w in workers)
        await workers[0].refund("dee")
        assert await workers[1].allow("dee")  # the refund was the host's
        for w in workers:
            await w.close()

    _run(main())


def test_concurrent_checks_of_two_workers_never_let_more_than_the_quota(tmp_path):
    """Each check is one transaction holding the file's write lock: workers checking
    at once never both take the last count."""
    per_day = 100
    workers = [SQLiteDailyQuota(tmp_path / QUOTAS_FILE, "follow", per_day) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:  # a connection each, as worker processes have
        answers = list(pool.map(lambda k: workers[k % 8].check_sync("eve", MIDNIGHT)[0],
                                range(400)))
    assert answers.count(True) == per_day
    for w in workers:
        asyncio.run(w.close())


def test_no_worker_decides_while_another_holds_its_check(tmp_path):
    """The interleaving that would let two workers take the last count: a second
    worker checks after the first has read the count and before it wrote. The first
    holds the file's write lock from its read to its write, so the second cannot
    decide meanwhile (it waits; here its busy timeout is short and it gives up)."""
    path = tmp_path / QUOTAS_FILE
    second = SQLiteDailyQuota(path, "follow", 1, busy_timeout=0.01)
    seen = []

    class FirstWorker(SQLiteDailyQuota):
        def _buckets(self, conn, user_id, now):
            buckets = super()._buckets(conn, user_id, now)
            try:  # the other worker's whole check, between this one's read and write
                seen.append(second.check_sync(user_id, now)[0])
            except sqlite3.OperationalError as exc:
                seen.append(str(exc))
            return buckets

    first = FirstWorker(path, "follow", 1)
    assert first.check_sync("eve", MIDNIGHT)[0]
    assert seen == ["database is locked"]
    assert not second.check_sync("eve", MIDNIGHT)[0]  # the first's count, once written
    for w in (first, second):
        asyncio.run(w.close())


def test_a_restarted_worker_keeps_the_count(tmp_path):
    """A restart (a deploy) forgot every count: a quota meant to stop a spammer was
    reset by any deploy."""
    clock = Clock(MIDNIGHT + 9_000)

    async def main():
        before = make_daily_quota("poll", 2, "sqlite", "", tmp_path, clock=clock)
        assert [await before.allow("fay") for _ in range(2)] == [True, True]
        await before.close()
        after = make_daily_quota("poll", 2, "sqlite", "", tmp_path, clock=clock)
        assert not await after.allow("fay")
        assert after.retry_after("fay") > DAY_SECONDS - QUOTA_BUCKET_SECONDS
        await after.close()

    _run(main())


def test_the_file_keeps_only_the_last_day(tmp_path):
    clock = Clock(MIDNIGHT)
    quota = SQLiteDailyQuota(tmp_path / QUOTAS_FILE, "poll", 10, clock=clock)

    async def main():
        for k in range(50):
            assert await quota.allow(f"once{k}")
        clock.now += DAY_SECONDS + 2 * QUOTA_BUCKET_SECONDS
        assert await quota.allow("later")
        await quota.close()

    _run(main())
    with sqlite3.connect(tmp_path / QUOTAS_FILE) as conn:
        assert conn.execute("SELECT user_id FROM quota_counts").fetchall() == [("later",)]


def _fallbacks(scope: str, reason: str) -> float:
    return metrics.FALLBACKS.labels(f"rate-limit-{scope}", reason)._value.get()


def test_a_locked_file_falls_back_to_the_workers_own_count(tmp_path, monkeypatch):
    """A write lock held past the busy timeout: the check is answered by this worker's
    own count (the mutation goes on), counted as a fallback, and the file is asked
    again once it is free."""
    monkeypatch.setattr(daily_quota, "QUOTA_RETRY_SECONDS", 0.0)  # ask the file every time
    clock = Clock(MIDNIGHT + 20_000)
    path = tmp_path / QUOTAS_FILE
    quota = SQLiteDailyQuota(path, "locked", 2, clock=clock, busy_timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)

    async def main():
        assert await quota.allow("gus")  # counted in the file
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        before = _fallbacks("locked", "OperationalError")
        # the worker's own count: a fresh window of 2
        assert [await quota.allow("gus") for _ in range(3)] == [True, True, False]
        assert _fallbacks("locked", "OperationalError") == before + 3
        assert quota.retry_after("gus") > 0
        holder.execute("ROLLBACK")
        assert await quota.allow("gus")  # the file again: its second of 2
        assert not await quota.allow("gus")
        assert _fallbacks("locked", "OperationalError") == before + 3
        await quota.close()

    _run(main())
    holder.close()


def test_an_unusable_file_falls_back_and_is_left_alone_a_while(tmp_path):
    """The file cannot be opened (here a directory is in its place, as a broken disk
    or permissions would leave it): every check is answered by the worker's own count,
    the file is tried once per QUOTA_RETRY_SECONDS, refunds go to the worker's count."""
    (tmp_path / QUOTAS_FILE).mkdir()
    clock = Clock(MIDNIGHT + 30_000)
    quota = make_daily_quota("broken", 2, "sqlite", "", tmp_path, clock=clock)
    assert isinstance(quota, SQLiteDailyQuota) and isinstance(quota.fallback, MemoryDailyQuota)
    tried = []
    connect = quota._connection

    def counting_connect():
        tried.append(1)
        return connect()

    quota._connection = counting_connect

    async def main():
        before = _fallbacks("broken", "OperationalError")
        assert [await quota.allow("hal") for _ in range(3)] == [True, True, False]
        await quota.refund("hal")
        assert [await quota.allow("hal") for _ in range(2)] == [True, False]
        assert _fallbacks("broken", "OperationalError") == before + 1
        await quota.close()

    _run(main())
    assert len(tried) == 1
