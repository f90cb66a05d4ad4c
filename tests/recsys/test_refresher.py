"""The refresher keeps a worker's catalog and live models in step with a real SQLite
store, and survives the store going away: no crash, growing waits, health that says so,
and, once the store is back, everything written meanwhile applied exactly once."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from recsys.artifacts import ArtifactStore
from recsys.events import EventStore, Interaction
from recsys.filters import Catalog
from recsys.recipes.base import TrainingData
from recsys.recipes.trending_now import TrendingNow
from recsys.refresher import CATALOG, MODELS, InvalidRefreshSetting, Refresher
from recsys.schemas import ITEMS
from recsys.serving import TAIL_BATCH, RecipeService

T0 = 1_700_000_000
POLLS = [f"p{i}" for i in range(5)]
STORE_GONE = "disk I/O error"


class FailingStore:
    """A real event store whose calls fail as those of a store that went away do:
    every call while ``down``, or one chosen call (:meth:`fail_once`)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.down = False
        self._countdown: dict[str, int] = {}

    def fail_once(self, method: str, after: int) -> None:
        """Let the next ``after`` calls of ``method`` through, fail the one after."""
        self._countdown[method] = after

    def __getattr__(self, name: str):
        real = getattr(self.store, name)
        if not callable(real):
            return real

        def call(*args, **kwargs):
            left = self._countdown.get(name)
            if left is not None:
                self._countdown[name] = left - 1
                if left == 0:
                    del self._countdown[name]
                    raise sqlite3.OperationalError(STORE_GONE)
            if self.down:
                raise sqlite3.OperationalError(STORE_GONE)
            return real(*args, **kwargs)

        return call


def _store_with_votes(tmp_path):
    """An event store with POLLS and three votes on each: (path, votes, last seq)."""
    path = tmp_path / "events.sqlite3"
    votes = [Interaction(f"u{k}", p, "HUNCH", T0 + k) for p in POLLS for k in range(3)]
    with EventStore(path) as store:
        store.upsert_items([{"ITEM_ID": p, "CATEGORY": "news"} for p in POLLS])
        store.append_many(votes)
        seq = store.last_seq()
    return path, votes, seq


@pytest.fixture
def engine(tmp_path):
    """A store with polls and votes, a trending model trained on them (TrendingNow counts
    every event it is fed, so an event applied twice shows), and a refresher reading the
    store through :class:`FailingStore`."""
    path, votes, seq = _store_with_votes(tmp_path)
    model = TrendingNow().fit(TrainingData(votes, items={p: {} for p in POLLS}))
    ArtifactStore(tmp_path / "artifacts").publish("trending-now", model, model.params(), "fp",
                                                  extra={"event_seq": seq})
    real = EventStore(path)
    reads = FailingStore(real)
    recipes = RecipeService(tmp_path / "artifacts", reads)
    added: list[str] = []  # every poll handed to the recipes, in order
    add_items = recipes.add_items
    recipes.add_items = lambda items: (added.extend(items), add_items(items))[1]
    catalog = Catalog(schema=ITEMS)
    refresher = Refresher(reads, catalog, threading.Lock(), recipes,
                          interval_seconds=1.0, max_backoff_seconds=10.0)
    refresher.load_catalog()
    yield SimpleNamespace(path=path, reads=reads, recipes=recipes, catalog=catalog,
                          refresher=refresher, added=added)
    refresher.stop()
    real.close()


def counted(engine, poll: str, at: int) -> int:
    """How many interactions the live trending model has for ``poll`` in the interval
    holding ``at`` (read without folding anything in)."""
    model = engine.recipes._live["trending-now"].artifact.model
    now = (at // model.interval_seconds + 1) * model.interval_seconds
    latest, _ = model.interval_counts(now)
    return int(latest[model._items.index[poll]])


def refresher_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "recsys.refresher" and r.levelno >= logging.WARNING]


def test_an_outage_is_survived_and_what_was_written_meanwhile_is_applied_once(engine, caplog):
    refresher = engine.refresher
    healthy = refresher.run_once()  # loads the model
    assert all(h.consecutive_failures == 0 and h.last_success for h in healthy.values())

    engine.reads.down = True
    later = T0 + 10_000
    with EventStore(engine.path) as other_worker:  # keeps writing through the outage
        other_worker.upsert_items([{"ITEM_ID": "late", "CATEGORY": "sports"}])
        other_worker.append_many(
            [Interaction(f"fan{k}", "late", "HUNCH", later + k) for k in range(7)])
    caplog.set_level(logging.DEBUG, logger="recsys.refresher")
    waits = []
    for _ in range(6):
        health = refresher.run_once()  # never raises
        waits.append(health[CATALOG].retry_in_seconds)
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]  # doubling up to the named limit
    for task in (CATALOG, MODELS):
        assert health[task].consecutive_failures == 6
        assert STORE_GONE in health[task].last_error
        assert health[task].last_success == healthy[task].last_success
    assert "late" not in engine.catalog.index  # serving what is in memory
    warned = refresher_warnings(caplog)
    assert len(warned) == 2 and all(STORE_GONE in w for w in warned)  # once per task

    engine.reads.down = False
    back = refresher.run_once()
    for task in (CATALOG, MODELS):
        assert back[task].consecutive_failures == 0 and back[task].last_error is None
        assert back[task].last_success >= healthy[task].last_success
        assert back[task].retry_in_seconds == 1.0
    assert len(refresher_warnings(caplog)) == 4  # and one "recovered" per task
    assert "late" in engine.catalog.index
    assert counted(engine, "late", later) == 7
    refresher.run_once()
    assert counted(engine, "late", later) == 7  # nothing applied twice
    assert Counter(engine.added)["late"] == 1


def test_a_failure_mid_read_resumes_where_it_stopped(engine):
    refresher = engine.refresher
    refresher.run_once()
    later = T0 + 10_000
    burst = TAIL_BATCH + 5  # two batches of the tail
    with EventStore(engine.path) as other_worker:
        other_worker.upsert_items([{"ITEM_ID": "late", "CATEGORY": "sports"}])
        other_worker.append_many(
            [Interaction(f"fan{k}", "late", "HUNCH", later) for k in range(burst)])
    # The first page of each read is applied; the next query fails.
    engine.reads.fail_once("items_updated_since", after=1)
    engine.reads.fail_once("events_since", after=1)
    health = refresher.run_once()
    assert health[CATALOG].consecutive_failures == health[MODELS].consecutive_failures == 1
    assert "late" in engine.catalog.index  # the page read before the failure stays
    assert counted(engine, "late", later) == TAIL_BATCH

    health = refresher.run_once()
    assert health[CATALOG].consecutive_failures == health[MODELS].consecutive_failures == 0
    assert counted(engine, "late", later) == burst  # the rest, not everything again
    assert Counter(engine.added)["late"] == 1


def test_the_thread_keeps_going_through_an_outage(engine):
    """The thread, not run_once: it backs off, reports, and catches up by itself."""
    refresher = Refresher(engine.reads, engine.catalog, threading.Lock(), engine.recipes,
                          interval_seconds=0.01, max_backoff_seconds=0.05)
    refresher.load_catalog()
    engine.reads.down = True
    refresher.start()
    try:
        give_up = time.monotonic() + 60  # generous: a busy machine
        while refresher.health()[CATALOG].consecutive_failures < 3:
            assert time.monotonic() < give_up, "the refresher stopped trying"
            time.sleep(0.01)
        assert refresher.running
        with EventStore(engine.path) as other_worker:
            other_worker.upsert_items([{"ITEM_ID": "late"}])
        engine.reads.down = False
        while "late" not in engine.catalog.index or any(
                h.consecutive_failures for h in refresher.health().values()):
            assert time.monotonic() < give_up, "the refresher did not catch up"
            time.sleep(0.01)
        assert refresher.running and refresher.crashed is None
    finally:
        refresher.stop()
    assert not refresher.running


@pytest.mark.parametrize("interval, limit", [(0, 10), (-1, 10), (2, 1)])
def test_settings_that_cannot_work_are_refused_by_name(engine, interval, limit):
    with pytest.raises(InvalidRefreshSetting, match="refresh"):
        Refresher(engine.reads, engine.catalog, threading.Lock(), engine.recipes,
                  interval_seconds=interval, max_backoff_seconds=limit)


def test_a_long_interval_backs_off_from_there(engine):
    refresher = Refresher(engine.reads, engine.catalog, threading.Lock(), engine.recipes,
                          interval_seconds=60.0)
    engine.reads.down = True
    assert refresher.run_once()[CATALOG].retry_in_seconds == 60.0
    assert refresher.run_once()[CATALOG].retry_in_seconds == 60.0  # not below the interval


def test_requests_rank_from_memory_while_the_store_cannot_be_read(engine, caplog):
    engine.refresher.run_once()
    before = engine.recipes.recommend("trending-now", None, 3, now=T0)
    assert len(before.items) == 3
    engine.reads.down = True
    for _ in range(3):
        during = engine.recipes.recommend("trending-now", None, 3, now=T0)
        assert during.items == before.items
    warned = [r.getMessage() for r in caplog.records
              if r.name == "recsys.serving" and r.levelno >= logging.WARNING]
    assert len(warned) == 1 and STORE_GONE in warned[0]  # once per outage, not per request


def test_a_thread_ended_by_something_other_than_a_store_error_says_so(engine, caplog):
    """Store errors are retried; anything that still ends the thread is not silent."""
    refresher = Refresher(engine.reads, engine.catalog, threading.Lock(), engine.recipes,
                          interval_seconds=0.01)

    def interpreter_exit() -> list[str]:
        raise SystemExit("shutting down")  # not an Exception: the per-task guard lets it by

    engine.recipes.available = interpreter_exit
    refresher.start()
    refresher._thread.join(timeout=60)
    assert not refresher.running
    assert refresher.crashed == "SystemExit: shutting down"
    assert any(r.levelno == logging.CRITICAL and r.name == "recsys.refresher"
               for r in caplog.records)


def test_a_quiet_round_reads_the_head_once_not_once_per_model(tmp_path):
    """The model tail on the event head: with nothing new, a round of the refresher's
    model task is one read of the store's head, whatever the number of live recipes (it
    was one events_since per recipe, four times a second per worker)."""
    from recsys.event_head import EventHead
    from recsys.recipes.popularity_count import PopularityCount
    from tests.stores.test_event_store_contract import CountingReads

    path, votes, seq = _store_with_votes(tmp_path)
    data = TrainingData(votes, items={p: {} for p in POLLS})
    for recipe, model in (("trending-now", TrendingNow().fit(data)),
                          ("popularity-count", PopularityCount().fit(data))):
        ArtifactStore(tmp_path / "artifacts").publish(recipe, model, model.params(), "fp",
                                                      extra={"event_seq": seq})
    with EventStore(path) as real, EventStore(path) as writer:
        reads = CountingReads(real)
        recipes = RecipeService(tmp_path / "artifacts", reads, head=EventHead(reads))
        refresher = Refresher(reads, Catalog(schema=ITEMS), threading.Lock(), recipes)
        engine = SimpleNamespace(recipes=recipes)
        refresher.fold_new_events()  # loads both models
        reads.reads.clear()
        refresher.fold_new_events()
        assert reads.reads == ["last_seq"]
        writer.append(Interaction("u9", "p1", "HUNCH", T0 + 50))  # another worker's vote
        before = counted(engine, "p1", T0 + 50)
        reads.reads.clear()
        refresher.fold_new_events()
        assert counted(engine, "p1", T0 + 50) == before + 1  # folded in, once
        assert recipes._live["popularity-count"].last_seq == writer.last_seq()
        assert Counter(reads.reads)["last_seq"] == 1
        reads.reads.clear()
        refresher.fold_new_events()
        assert reads.reads == ["last_seq"]
