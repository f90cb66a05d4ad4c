"""Worker processes of one host open the same fresh SQLite file at the same instant.

SQLite fails one of two connections that switch a new file to WAL together with
"database is locked" at once, whatever the busy timeout (CI saw it in the feed-session
store). On the old code about 8 % of such opens failed; every store must now open.
"""
from __future__ import annotations

import multiprocessing

import pytest

from recsys.events import EventStore
from recsys.feed_sessions import SQLiteFeedSessionStore
from recsys.filters.store import FilterStore
from recsys.promotions import PromotionStore

STORES = {
    "events": EventStore,
    "feed sessions": SQLiteFeedSessionStore,
    "filters": FilterStore,
    "promotions": PromotionStore,
}
PROCESSES = 4
ROUNDS = 15  # 60 racing opens per store; the old code failed ~5 of them


def _open_each_round(kind, root, barrier, results):
    """One worker: in every round, wait for the others, then open that round's file."""
    for round_ in range(ROUNDS):
        barrier.wait(timeout=60)
        try:
            STORES[kind](f"{root}/{round_}.sqlite3")
            results.put("ok")
        except Exception as exc:  # reported to the parent, which names it
            results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("kind", sorted(STORES))
def test_processes_opening_a_fresh_store_together_all_succeed(kind, tmp_path):
    # spawn, not fork: a fork of the test process inherits SQLite's internal mutexes in
    # whatever state other tests' background threads (session checkpointers) left them,
    # and the child can hang on its first open. The workers start once per store.
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    workers = [ctx.Process(target=_open_each_round, args=(kind, str(tmp_path), barrier, results))
               for _ in range(PROCESSES)]
    for w in workers:
        w.start()
    try:
        outcomes = [results.get(timeout=120) for _ in range(ROUNDS * PROCESSES)]
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.kill()
    failures = [o for o in outcomes if o != "ok"]
    assert not failures, f"{len(failures)} of {ROUNDS * PROCESSES} opens failed: {failures[:3]}"
