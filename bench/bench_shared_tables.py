"""Cost of the named-filter and promotion stores' operations, SQLite beside PostgreSQL.

What each gateway worker does against these stores: once a second it reads the
promotions' version (one row) and, only when it moved, every promotion; a request naming
a filter re-reads it at most once a second. Admin tools create and delete. Timed here,
per operation, on a temporary SQLite file and on PostgreSQL (``--store-url``, or a
throwaway server started from tests/servers.py when PostgreSQL is installed), in one run.

Run: ``python bench/bench_shared_tables.py [--rounds 2000] [--store-url postgresql://...]``
(the PostgreSQL database is upgraded and written to: give an empty one).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.filters import open_filter_store  # noqa: E402
from recsys.promotions import Promotion, open_promotion_store  # noqa: E402

PROMOTIONS = 20  # a generous number of scheduled promotions kept at once
EXPR = 'INCLUDE ItemID WHERE Items.CATEGORY IN ("news")'


def _timed(fn, rounds: int) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(samples, n=100)
    return q[49], q[98]


def bench(url: str, rounds: int) -> dict[str, tuple[float, float]]:
    filters = open_filter_store(url, upgrade=True)
    promotions = open_promotion_store(url, upgrade=True)
    try:
        filters.create("news", EXPR)
        for i in range(PROMOTIONS):
            promotions.create(Promotion(f"promo-{i:02d}", 10, EXPR, priority=i))
        counter = iter(range(10**9))

        def create_delete() -> None:
            name = f"tmp-{next(counter)}"
            filters.create(name, EXPR)
            filters.delete(name)

        return {
            "promotions.version()": _timed(promotions.version, rounds),
            f"promotions.list() ({PROMOTIONS})": _timed(promotions.list, rounds),
            "filters.get(max_age_seconds=0)": _timed(
                lambda: filters.get("news", max_age_seconds=0), rounds),
            "promotions.update()": _timed(
                lambda: promotions.update("promo-00", priority=0), rounds // 4),
            "filters.create()+delete()": _timed(create_delete, rounds // 4),
        }
    finally:
        filters.close()
        promotions.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--store-url", default=None, help="an empty PostgreSQL database")
    args = parser.parse_args()
    server = None
    url = args.store_url
    if url is None:
        from tests.servers import PostgresServer, postgres_bin_dir

        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            sys.exit("PostgreSQL is not installed: give --store-url postgresql://...")
        server = PostgresServer(bin_dir).init()
        url = server.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {"sqlite": bench(str(Path(tmp) / "events.sqlite3"), args.rounds),
                       "postgresql": bench(url, args.rounds)}
    finally:
        if server is not None:
            server.destroy()
    print(f"{'operation':36} {'sqlite p50/p99 ms':>20} {'postgresql p50/p99 ms':>24}")
    for op in results["sqlite"]:
        s, p = results["sqlite"][op], results["postgresql"][op]
        print(f"{op:36} {s[0]:9.3f} / {s[1]:7.3f} {p[0]:11.3f} / {p[1]:9.3f}")


if __name__ == "__main__":
    main()
