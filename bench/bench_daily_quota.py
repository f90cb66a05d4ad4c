"""Benchmark: what one daily-quota check costs (``await quota.allow(user)``), a host's
shared SQLite file against this worker's own memory, same run.

Three quotas of one scope, each asked ``--checks`` times for ``--users`` users in turn
(a quota high enough that every check is counted, i.e. writes):

- ``local-bucket``: the token bucket a worker kept before (``LocalRateLimiter``),
- ``memory``: :class:`MemoryDailyQuota`, this worker's window (the shared ones' fallback),
- ``sqlite``: :class:`SQLiteDailyQuota` on a file in a temporary directory: one
  ``BEGIN IMMEDIATE`` transaction per check, run in a thread (``asyncio.to_thread``).

Printed: microseconds per check (median of ``--rounds``) and the ratio to
``local-bucket``. The SQLite check is on the path of poll writes and follows only,
which also store an event or a journal row (an fsync) and are limited per minute.

    python bench/bench_daily_quota.py [--checks 2000] [--users 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.daily_quota import (  # noqa: E402
    DAY_SECONDS,
    QUOTAS_FILE,
    MemoryDailyQuota,
    SQLiteDailyQuota,
)
from gateway.rate_limit import LocalRateLimiter  # noqa: E402


async def _per_check(quota, checks: int, users: int) -> float:
    started = time.perf_counter()
    for k in range(checks):
        if not await quota.allow(f"user{k % users}"):
            raise SystemExit("a check was refused: raise the quota")
    return (time.perf_counter() - started) / checks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=2_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    per_day = args.checks * args.rounds + 1
    results: dict[str, list[float]] = {"local-bucket": [], "memory": [], "sqlite": []}
    with tempfile.TemporaryDirectory() as directory:
        quotas = {
            "local-bucket": LocalRateLimiter(per_day, window_seconds=DAY_SECONDS,
                                             burst=per_day),
            "memory": MemoryDailyQuota(per_day),
            "sqlite": SQLiteDailyQuota(Path(directory) / QUOTAS_FILE, "bench", per_day),
        }

        async def run() -> None:
            for _ in range(args.rounds):
                for name, quota in quotas.items():
                    results[name].append(await _per_check(quota, args.checks, args.users))
            await quotas["sqlite"].close()

        asyncio.run(run())
    base = statistics.median(results["local-bucket"])
    print(f"{args.checks} checks x {args.rounds} rounds, {args.users} users")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:>13}: {median:8.1f} us a check  ({median / base:6.1f}x local-bucket)")


if __name__ == "__main__":
    main()
