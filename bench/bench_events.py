"""Benchmark: how fast the event store takes events, against raw sqlite3 in the same run.

Goals: append_many in batches of 100 takes at least 10,000 events/s (a busy gateway's
impressions and hunches, with room to spare); a bulk import of 1M interactions takes well
under a minute. Single appends are printed for information: each one is a durable
commit (an fsync), so the disk, not the code, sets that number.

The PostgreSQL store (several hosts) runs the same three workloads in the same run, on a
throwaway local server (tests/servers.py; fsync and synchronous_commit on, as shipped)
or on ``--postgres-url``; its goal is the same 10,000 events/s batched and durable, and
its ratio to the SQLite store is printed.

The baseline is what one writes first: the same rows, the same pragmas (WAL,
synchronous=FULL), raw ``sqlite3`` into a bare table without the store's unique event-id
index, secondary indexes or validation. The ratio (store / baseline) is what those cost.

    python bench/bench_events.py [--single 500] [--batched 30000] [--bulk 200000]
                                 [--postgres-url URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.events import (  # noqa: E402 - after the path fix above
    BUSY_TIMEOUT_MS,
    EventStore,
    Interaction,
)

BATCH = 100  # events per append_many call, as the goal is stated
# Writers at once in the concurrent run: a gateway's requests append in parallel (each
# writer its own store object, as separate workers or hosts would have).
WRITERS = 4
GOAL_BATCHED_PER_S = 10_000
GOAL_BULK_1M_S = 60.0

_BARE_TABLE = (
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT, kind TEXT, user_id TEXT, "
    "item_id TEXT, event_type TEXT, event_value REAL, timestamp INTEGER, impression TEXT, "
    "recommendation_id TEXT)"
)
_BARE_INSERT = (
    "INSERT INTO events (event_id, kind, user_id, item_id, event_type, event_value, "
    "timestamp, impression, recommendation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _events(n: int, offset: int = 0) -> list[Interaction]:
    return [
        Interaction(
            f"u{i % 20_000}", f"p{i % 3_000}", "HUNCH" if i % 4 else "COMMENT",
            1_700_000_000 + i, None,
            (f"p{i % 3_000}", f"p{(i + 1) % 3_000}", f"p{(i + 2) % 3_000}") if i % 2 else (),
            f"rec-{i // 10}" if i % 3 == 0 else None,
        )
        for i in range(offset, offset + n)
    ]


def _rows(events: list[Interaction]) -> list[tuple]:
    import json

    return [
        (e.event_id, "interaction", e.user_id, e.item_id, e.event_type, e.event_value,
         e.timestamp, json.dumps(e.impression) if e.impression else None, e.recommendation_id)
        for e in events
    ]


def _bare(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(_BARE_TABLE)
    return conn


def _rate(n: int, work: Callable[[], object]) -> tuple[float, float]:
    t0 = time.perf_counter()
    work()
    seconds = time.perf_counter() - t0
    return n / seconds, seconds


def _line(name: str, store: float, baseline: float, unit: str = "events/s") -> None:
    print(f"{name:<34} store {store:>12,.0f} {unit}   raw sqlite3 {baseline:>12,.0f} {unit}"
          f"   ratio {store / baseline:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=500, help="single durable appends")
    parser.add_argument("--batched", type=int, default=30_000, help="events via append_many")
    parser.add_argument("--bulk", type=int, default=200_000, help="interactions via import_bulk")
    parser.add_argument("--postgres-url", default=None,
                        help="an empty PostgreSQL database [default: a throwaway local server]")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    sqlite_rates: dict[str, float] = {}

    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        root = Path(tmp)

        events = _events(args.single)
        rows = _rows(events)
        with EventStore(root / "single.db") as store:
            store_rate, _ = _rate(len(events), lambda: [store.append(e) for e in events])
        bare = _bare(root / "single-bare.db")

        def bare_single() -> None:
            for row in rows:
                bare.execute("BEGIN IMMEDIATE")
                bare.execute(_BARE_INSERT, row)
                bare.execute("COMMIT")

        base_rate, _ = _rate(len(rows), bare_single)
        bare.close()
        _line("append (one commit per event)", store_rate, base_rate)
        sqlite_rates["single"] = store_rate

        events = _events(args.batched, offset=10_000_000)
        rows = _rows(events)
        batches = [events[i:i + BATCH] for i in range(0, len(events), BATCH)]
        row_batches = [rows[i:i + BATCH] for i in range(0, len(rows), BATCH)]
        with EventStore(root / "batched.db") as store:
            batched_rate, _ = _rate(len(events), lambda: [store.append_many(b) for b in batches])
        bare = _bare(root / "batched-bare.db")

        def bare_batched() -> None:
            for batch in row_batches:
                bare.execute("BEGIN IMMEDIATE")
                bare.executemany(_BARE_INSERT, batch)
                bare.execute("COMMIT")

        base_rate, _ = _rate(len(rows), bare_batched)
        bare.close()
        _line(f"append_many (batches of {BATCH})", batched_rate, base_rate)
        sqlite_rates["batched"] = batched_rate
        events = _events(args.batched, offset=15_000_000)
        sqlite_rates["concurrent"] = _concurrent(
            lambda: EventStore(root / "batched.db"), events)
        print(f"append_many, {WRITERS} writers at once    store {sqlite_rates['concurrent']:>12,.0f}"
              " events/s")

        events = _events(args.bulk, offset=20_000_000)
        rows = _rows(events)
        with EventStore(root / "bulk.db") as store:
            bulk_rate, bulk_s = _rate(
                len(events), lambda: store.import_bulk(events, mode="full")
            )
        bare = _bare(root / "bulk-bare.db")

        def bare_bulk() -> None:
            bare.execute("BEGIN IMMEDIATE")
            bare.executemany(_BARE_INSERT, rows)
            bare.execute("COMMIT")

        base_rate, _ = _rate(len(rows), bare_bulk)
        bare.close()
        _line(f"import_bulk ({args.bulk:,} in one txn)", bulk_rate, base_rate)
        sqlite_rates["bulk"] = bulk_rate

    projected = 1_000_000 / bulk_rate
    print(f"\nappend_many goal >= {GOAL_BATCHED_PER_S:,} events/s: "
          f"{'met' if batched_rate >= GOAL_BATCHED_PER_S else 'MISSED'} ({batched_rate:,.0f})")
    print(f"import_bulk goal 1M < {GOAL_BULK_1M_S:.0f} s: "
          f"{'met' if projected < GOAL_BULK_1M_S else 'MISSED'} (projected {projected:.1f} s "
          f"from {args.bulk:,} in {bulk_s:.1f} s; index upkeep grows a little faster than "
          "linear, measure with --bulk 1000000)")
    if not args.no_postgres:
        _bench_postgres(args, sqlite_rates)


def _bench_postgres(args: argparse.Namespace, sqlite_rates: dict[str, float]) -> None:
    from recsys.postgres_events import PostgresEventStore

    server = None
    url = args.postgres_url
    if url is None:
        from tests.servers import PostgresServer, postgres_bin_dir

        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            print("\nPostgreSQL: not installed (scripts/test.sh installs it); skipped")
            return
        server = PostgresServer(bin_dir).init()
        url = server.url
    print(f"\nPostgreSQL store vs the SQLite store above ({'throwaway local server' if server else url})")
    try:
        with PostgresEventStore(url, upgrade=True) as store:
            events = _events(args.single, offset=30_000_000)
            single, _ = _rate(len(events), lambda: [store.append(e) for e in events])
            _pg_line("append (one commit per event)", single, sqlite_rates["single"])
            events = _events(args.batched, offset=40_000_000)
            batches = [events[i:i + BATCH] for i in range(0, len(events), BATCH)]
            batched, _ = _rate(len(events), lambda: [store.append_many(b) for b in batches])
            _pg_line(f"append_many (batches of {BATCH})", batched, sqlite_rates["batched"])
            events = _events(args.batched, offset=45_000_000)
            concurrent = _concurrent(lambda: PostgresEventStore(url), events)
            _pg_line(f"append_many, {WRITERS} writers at once", concurrent,
                     sqlite_rates["concurrent"])
            events = _events(args.bulk, offset=50_000_000)
            bulk, bulk_s = _rate(len(events), lambda: store.import_bulk(events, mode="full"))
            _pg_line(f"import_bulk ({args.bulk:,} in one txn)", bulk, sqlite_rates["bulk"])
            assert store.counts()["interactions"] == args.bulk  # the import was stored
    finally:
        if server is not None:
            server.destroy()
    best = max(batched, concurrent)
    print(f"\nPostgreSQL append_many goal >= {GOAL_BATCHED_PER_S:,} events/s (durable): "
          f"{'met' if best >= GOAL_BATCHED_PER_S else 'MISSED'} ({batched:,.0f} one writer, "
          f"{concurrent:,.0f} with {WRITERS})")
    print(f"PostgreSQL import_bulk 1M projected {1_000_000 / bulk:.1f} s "
          f"(from {args.bulk:,} in {bulk_s:.1f} s)")


def _concurrent(open_store: Callable[[], object], events: list[Interaction]) -> float:
    """Events/s of WRITERS threads appending batches of BATCH, each with its own store."""
    import threading

    stores = [open_store() for _ in range(WRITERS)]
    shares = [events[k::WRITERS] for k in range(WRITERS)]

    def write(store, share: list[Interaction]) -> None:
        for i in range(0, len(share), BATCH):
            store.append_many(share[i:i + BATCH])

    threads = [threading.Thread(target=write, args=pair) for pair in zip(stores, shares)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = len(events) / (time.perf_counter() - t0)
    for store in stores:
        store.close()
    return rate


def _pg_line(name: str, postgres: float, sqlite: float) -> None:
    print(f"{name:<34} postgres {postgres:>10,.0f} events/s   sqlite store "
          f"{sqlite:>10,.0f} events/s   ratio {postgres / sqlite:5.2f}")


if __name__ == "__main__":
    main()
