"""The event store contract: the same assertions on every store ``HUNCH_STORE_URL`` can
select. SQLite runs on a real file; PostgreSQL on the real test server (a fresh, empty
database per test), through :func:`recsys.event_stores.open_event_store`.

PostgreSQL-only tests at the end: server restart and crash (typed retryable error while
down, recovery without reopening, acknowledged appends kept) and schema migrations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from recsys import events as events_module
from recsys import postgres_events
from recsys.admission import EventRules
from recsys.errors import HunchError, InvalidEvent, NotPollAuthor
from recsys.event_stores import (
    EventStoreProtocol,
    SchemaOutdated,
    StoreUnavailable,
    open_event_store,
)
from recsys.events import (
    EventStoreError,
    ImportCounts,
    Impression,
    Interaction,
    LatestInteractionsCache,
)
from recsys.postgres_events import PostgresEventStore
from recsys.schemas import MAX_ID_LENGTH
from recsys.store_db import InvalidStoreUrl
from tests.servers import free_port

NOW = 1_764_000_000  # the server clock of the admission tests
DAY = 24 * 3600
# How long a PostgreSQL test waits for the restarted server to take writes again: the
# pool reconnects with a backoff of 1 s, doubling; this bounds a hang, it times nothing.
RECOVERY_DEADLINE_SECONDS = 60.0
# A short pool timeout while the server is down: the error comes after this, not 5 s.
DOWN_POOL_TIMEOUT_SECONDS = 1.0


def hunch(user: str, poll: str, ts: int, **kw) -> Interaction:
    return Interaction(user, poll, kw.pop("event_type", "HUNCH"), ts, **kw)


def snapshot(store) -> tuple:
    """Everything a user of the store can observe."""
    return (
        list(store.interactions()), list(store.impressions()), list(store.items()),
        list(store.users()), store.counts(), store.last_seq(), store.impression_counts(),
    )


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'events.sqlite3'}"  # sqlite:///tmp/...
    url = request.getfixturevalue("postgres_url")
    open_event_store(url, upgrade=True).close()  # what `hunch db upgrade` does
    return url


@pytest.fixture
def open_store(store_url):
    """Opens another store object on the same data (another worker or host)."""
    opened: list = []

    def open_(rules: EventRules | None = None):
        store = open_event_store(store_url, rules)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store):
    return open_store()


def test_both_stores_keep_the_protocol(store) -> None:
    assert isinstance(store, EventStoreProtocol)


# --------------------------------------------------------------------- moved from
# tests/recsys/test_events.py (they ran on SQLite only)

def test_catalog_records_are_upserted_by_merging_fields(store) -> None:
    assert store.upsert_items([
        {"ITEM_ID": "p1", "CATEGORY": "sports", "CREATION_TIMESTAMP": 10, "QUESTION": "Who?"},
        {"ITEM_ID": "p2", "CATEGORY": "food|drink", "QUESTION": None},
    ]) == 2
    store.upsert_items([{"ITEM_ID": "p1", "CATEGORY": "news", "QUESTION": None}])
    store.upsert_users([{"USER_ID": "u1", "AGE": 30, "CLUSTER": "c1"}])
    store.upsert_users([{"USER_ID": "u1", "CLUSTER": "c2"}])

    # given fields replace, missing ones stay, None removes (JSON merge patch)
    assert store.get_item("p1") == {"ITEM_ID": "p1", "CATEGORY": "news",
                                    "CREATION_TIMESTAMP": 10}
    assert store.get_item("p2") == {"ITEM_ID": "p2", "CATEGORY": "food|drink"}
    assert store.get_item("nope") is None
    assert store.get_user("u1") == {"USER_ID": "u1", "AGE": 30, "CLUSTER": "c2"}
    assert store.get_user("nope") is None
    assert [r["ITEM_ID"] for r in store.items()] == ["p1", "p2"]
    assert list(store.users()) == [{"USER_ID": "u1", "AGE": 30, "CLUSTER": "c2"}]
    assert store.counts() == {"interactions": 0, "impressions": 0, "items": 2, "users": 1}


# --------------------------------------------------------------------- de-duplication


def test_a_later_duplicate_event_id_is_ignored_everywhere(open_store) -> None:
    first = hunch("u1", "p1", 100, event_id="e1")
    again = hunch("u1", "p2", 200, event_id="e1")  # same id, different content
    with open_store() as s:
        assert s.append(first) is True
        assert s.append(again) is False
        # within one batch, and against what is already stored
        assert s.append_many([hunch("u1", "p3", 300, event_id="e2"),
                              hunch("u1", "p4", 400, event_id="e2"), first]) == 1
    with open_store() as other:  # a separate store instance
        assert other.append(again) is False
        assert other.append(Impression("u1", ("p1",), 500, event_id="e2")) is False
        assert [e.item_id for e in other.interactions()] == ["p1", "p3"]
        assert other.counts()["interactions"] == 2
        assert other.counts()["impressions"] == 0


def test_events_without_an_id_are_deduplicated_by_content(store) -> None:
    assert store.append(hunch("u1", "p1", 100)) is True
    assert store.append(hunch("u1", "p1", 100)) is False
    assert store.append(hunch("u1", "p1", 101)) is True


def test_stored_event_ids_names_the_pairs_the_store_holds(store) -> None:
    """What `hunch data import` asks to skip rows an older import stored under the id
    derived from the row as written (" hunch ")."""
    store.import_bulk([Interaction("u1", "p1", " hunch ", 1_700_000_000, event_id="e1"),
                       Interaction("u2", "p1", "HUNCH", 1_700_000_000, event_id="e2")])
    asked = [("u1", "e1"), ("u2", "e1"), ("u1", "nope")] + [("u", f"x{i}") for i in range(600)]
    assert store.stored_event_ids(asked) == {("u1", "e1")}
    assert store.stored_event_ids([]) == set()


def test_event_ids_are_unique_per_user_not_across_users(open_store) -> None:
    # Ids are client-chosen: another user's id must neither drop an event nor reveal
    # that it was sent (the old global key answered stored=false and stored nothing).
    with open_store() as s:
        assert s.append(hunch("u0002", "p0002", 100, event_id="client-evt-42")) is True
        assert s.append(hunch("u0003", "p0003", 200, event_type="COMMENT",
                              event_id="client-evt-42")) is True
        assert s.append(Impression("u0004", ("p1",), 300, event_id="client-evt-42")) is True
        # the same user's retry is still ignored, whatever it carries
        assert s.append(hunch("u0003", "p9", 400, event_id="client-evt-42")) is False
        assert s.append_many([hunch("u0002", "p9", 500, event_id="client-evt-42"),
                              hunch("u0005", "p0005", 500, event_id="client-evt-42"),
                              hunch("u0005", "p9", 600, event_id="client-evt-42")]) == 1
        assert s.import_bulk(interactions=[
            hunch("u0006", "p0006", 700, event_id="client-evt-42"),
            hunch("u0004", "p9", 800, event_id="client-evt-42"),  # its impression's id
        ]).interactions == 1
    with open_store() as other:  # what every worker sees
        assert [(e.user_id, e.item_id, e.event_type) for e in other.interactions()] == [
            ("u0002", "p0002", "HUNCH"), ("u0003", "p0003", "COMMENT"),
            ("u0005", "p0005", "HUNCH"), ("u0006", "p0006", "HUNCH")]
        assert [e.user_id for e in other.impressions()] == ["u0004"]


def test_a_poll_repeated_in_one_impression_list_counts_once(store) -> None:
    # One list is one view: a poll seen once per batch counts once, in the order first
    # shown, however the batch arrives (live, an interaction's list, a bulk import).
    assert store.append(Impression("u1", ("p0001",) * 5, 100, event_id="m1")) is True
    store.append(Impression("u1", ("p3", "p1", "p3", "p2", "p1"), 200, event_id="m2"))
    store.append(hunch("u1", "p9", 300, impression=("p4", "p4", "p5")))
    store.import_bulk(impressions=[Impression("u2", ("p5", "p5"), 400)])
    assert [e.item_ids for e in store.impressions()] == [
        ("p0001",), ("p3", "p1", "p2"), ("p5",)]
    assert [e.impression for e in store.interactions()] == [("p4", "p5")]
    assert store.impression_counts() == {"p0001": 1, "p1": 1, "p2": 1, "p3": 1, "p4": 1,
                                         "p5": 2}


# --------------------------------------------------------------------- reads


def test_latest_events_are_newest_first_per_case_insensitive_type(store) -> None:
    store.append_many([
        hunch("u1", "p1", 100, event_type="HUNCH"),
        hunch("u1", "p2", 300, event_type="hunch"),
        hunch("u1", "p3", 200, event_type="Hunch"),
        hunch("u1", "p4", 300, event_type="HUNCH", event_id="tie-stored-later"),
        hunch("u1", "p5", 150, event_type="COMMENT"),
        hunch("u2", "p6", 999, event_type="HUNCH"),  # someone else
        Impression("u1", ("p7",), 999),  # not an interaction
    ])
    latest = store.latest_events("u1", per_type=3)
    # key spelled as the newest event of the type; a tie goes to the one stored later
    assert {k: [e.item_id for e in v] for k, v in latest.items()} == {
        "HUNCH": ["p4", "p2", "p3"], "COMMENT": ["p5"],
    }
    only = store.latest_events("u1", per_type=1, event_types=["hunch"])
    assert {k: [e.item_id for e in v] for k, v in only.items()} == {"hunch": ["p4"]}
    assert store.latest_events("u1", event_types=["VIEW"]) == {}
    assert store.latest_events("nobody") == {}


def test_events_between_is_half_open_in_time_order(store) -> None:
    store.append_many([
        hunch("u1", "late", 300), hunch("u1", "start", 100),
        hunch("u2", "mid", 200, event_type="comment"), hunch("u1", "end", 400),
        Impression("u1", ("p1",), 200),
    ])
    assert [e.item_id for e in store.events_between(100, 400)] == ["start", "mid", "late"]
    assert [e.item_id for e in store.events_between(100, 400, ["COMMENT"])] == ["mid"]
    assert list(store.events_between(100, 400, [])) == []
    assert list(store.events_between(500, 600)) == []


def test_iterators_keep_time_order_and_insertion_order_of_ties_across_pages(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "PAGE_SIZE", 3)  # force several pages
    monkeypatch.setattr(postgres_events, "PAGE_SIZE", 3)
    polls = [f"p{i}" for i in range(10)]
    # stored out of time order, with runs of equal timestamps crossing page boundaries
    stamps = [50, 10, 10, 10, 10, 30, 30, 30, 30, 20]
    store.append_many(hunch("u1", p, ts) for p, ts in zip(polls, stamps))
    store.append_many(Impression("u1", (p,), ts) for p, ts in zip(polls, stamps))
    expected = ["p1", "p2", "p3", "p4", "p9", "p5", "p6", "p7", "p8", "p0"]
    assert [e.item_id for e in store.interactions()] == expected
    assert [e.item_ids[0] for e in store.impressions()] == expected
    assert [e.item_id for e in store.events_between(10, 31)] == expected[:-1]
    store.upsert_items({"ITEM_ID": p} for p in polls)
    assert [r["ITEM_ID"] for r in store.items()] == sorted(polls)


def test_counts_and_count_events(store) -> None:
    store.append_many([
        hunch("u1", "p1", 100), hunch("u1", "p2", 200, event_type="comment"),
        hunch("u2", "p1", 300, event_type="Comment"), hunch("u2", "p1", 400),
        Impression("u1", ("p1", "p2"), 500),
    ])
    store.upsert_items([{"ITEM_ID": "p1"}, {"ITEM_ID": "p2"}])
    store.upsert_users([{"USER_ID": "u1", "AGE": 20}])
    assert store.counts() == {"interactions": 4, "impressions": 1, "items": 2, "users": 1}
    assert store.count_events() == 4
    assert store.count_events(user_id="u1") == 2
    assert store.count_events(item_id="p1") == 3
    assert store.count_events(event_type="COMMENT") == 2
    assert store.count_events(item_id="p1", event_type="hunch", since=300) == 1
    assert store.count_events(user_id="nobody") == 0


def test_events_since_lets_another_process_follow_new_events(open_store) -> None:
    with open_store() as writer, open_store() as follower:
        assert follower.last_seq() == 0 and follower.events_since(0) == []
        writer.append_many([hunch("u1", "p1", 100), hunch("u1", "p2", 50)])
        writer.append(Impression("u1", ("p3",), 10))
        got = follower.events_since(0)
        # storage order, not time order; numbers strictly increasing
        assert [type(e).__name__ for _, e in got] == ["Interaction", "Interaction", "Impression"]
        assert [s for s, _ in got] == sorted({s for s, _ in got})
        last = got[-1][0]
        assert follower.last_seq() == last
        assert follower.events_since(last) == []
        writer.append(hunch("u1", "p1", 100))  # duplicate: nothing new to follow
        assert follower.events_since(last) == []
        writer.append(hunch("u2", "p9", 1))
        new = follower.events_since(last)
        assert [(e.user_id, e.item_id) for _, e in new] == [("u2", "p9")]
        assert new[0][0] > last
        assert len(follower.events_since(0, limit=2)) == 2


def test_impression_counts_explicit_only_implicit_and_explicit_wins(store) -> None:
    assert store.record_recommendation("rec-1", "u1", ["p1", "p2", "p3"], 100) is True
    assert store.record_recommendation("rec-1", "u1", ["p9"], 101) is False  # first kept
    assert store.recommendation_items("rec-1") == ("p1", "p2", "p3")
    assert store.recommendation_items("unknown") is None
    store.append_many([
        hunch("u1", "p1", 110, impression=("p1", "p4")),  # explicit list
        Impression("u1", ("p4", "p5"), 120),  # impression-only event
        hunch("u1", "p2", 130, recommendation_id="rec-1"),  # implicit: rec-1's polls
        hunch("u1", "p3", 140, impression=("p5",), recommendation_id="rec-1"),  # explicit wins
        Impression("u1", (), 150, "rec-1"),  # impression event naming the response
        hunch("u1", "p6", 160, recommendation_id="never-recorded"),  # unknown: nothing
        hunch("u1", "p7", 170),  # no impressions at all
    ])
    assert store.impression_counts() == {"p1": 3, "p2": 2, "p3": 2, "p4": 2, "p5": 2}
    assert store.impression_counts(since=130) == {"p1": 2, "p2": 2, "p3": 2, "p5": 1}
    assert store.impression_counts(since=1_000) == {}


# --------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("event", "fix"),
    [
        (Interaction("", "p1", "HUNCH", 1), "user_id"),
        (Interaction("u1", "", "HUNCH", 1), "item_id"),
        (Interaction("u1", "p" * (MAX_ID_LENGTH + 1), "HUNCH", 1), "item_id"),
        (Interaction("u1", "p1", "HUNCH", 1, recommendation_id="r" * 300), "recommendation_id"),
        (Interaction("u1", "p1", "HUNCH", 1, impression=tuple(f"poll-{i:05}" for i in range(100))),
         "at most 1000"),
        (Interaction("u1", "p1", "HUNCH", 1, impression=("p1", "")), "item id"),
        (Interaction("u1", "p1", "HUNCH", 1, impression=("a|b",)), "'|'"),
        (Interaction("u1", "p1", "HUNCH", 1, event_value=float("nan")), "event_value"),
        (Interaction("u1", "p1", "HUNCH", "yesterday"), "timestamp"),  # type: ignore[arg-type]
        (Impression("u1", (), 1), "item_ids"),
        (Impression("", ("p1",), 1), "user_id"),
    ],
)
def test_invalid_events_are_rejected_and_nothing_is_written(
    store, event, fix: str
) -> None:
    good = hunch("u1", "p1", 1)
    with pytest.raises(InvalidEvent, match=fix.replace("|", r"\|")):
        store.append(event)
    with pytest.raises(InvalidEvent):
        store.append_many([good, event, hunch("u1", "p2", 2)])
    with pytest.raises(InvalidEvent):
        store.import_bulk([good] if isinstance(event, Impression) else [good, event],
                          [event] if isinstance(event, Impression) else [])
    assert store.counts() == {"interactions": 0, "impressions": 0, "items": 0, "users": 0}
    assert store.last_seq() == 0


def test_invalid_catalog_records_are_rejected(store) -> None:
    with pytest.raises(InvalidEvent, match="ITEM_ID of record #2"):
        store.upsert_items([{"ITEM_ID": "p1"}, {"CATEGORY": "no id"}])
    with pytest.raises(InvalidEvent, match="JSON"):
        store.upsert_users([{"USER_ID": "u1", "AGE": object()}])
    assert store.counts()["items"] == 0 and store.counts()["users"] == 0


# --------------------------------------------------------------------- bulk import


def test_import_bulk_incremental_then_full(store) -> None:
    store.append(hunch("u0", "p0", 1, event_id="kept"))
    store.upsert_items([{"ITEM_ID": "p0", "CATEGORY": "old", "QUESTION": "q"}])
    counts = store.import_bulk(
        [hunch("u1", "p1", 10), hunch("u1", "p2", 20), hunch("u0", "p0", 1, event_id="kept")],
        [Impression("u1", ("p1", "p2"), 5)],
        [{"ITEM_ID": "p0", "CATEGORY": "new"}, {"ITEM_ID": "p1", "CATEGORY": "x"}],
        [{"USER_ID": "u1", "AGE": 31}],
    )
    assert counts == ImportCounts(interactions=2, impressions=1, items=2, users=1)
    assert store.counts() == {"interactions": 3, "impressions": 1, "items": 2, "users": 1}
    assert store.get_item("p0") == {"ITEM_ID": "p0", "CATEGORY": "new", "QUESTION": "q"}
    before = store.last_seq()

    counts = store.import_bulk([hunch("u9", "p9", 99)], [], [{"ITEM_ID": "p9", "CATEGORY": "z"}],
                               [], mode="full")
    assert counts == ImportCounts(interactions=1, impressions=0, items=1, users=0)
    assert [e.item_id for e in store.interactions()] == ["p9"]
    assert list(store.impressions()) == []
    assert list(store.items()) == [{"ITEM_ID": "p9", "CATEGORY": "z"}]
    assert list(store.users()) == []
    # followers never see a number twice, even after everything was replaced
    assert [s for s, _ in store.events_since(0)][0] > before
    with pytest.raises(EventStoreError, match="incremental"):
        store.import_bulk([], mode="replace")  # type: ignore[arg-type]


class _Broken(Exception):
    pass


def _fails_after(n: int, make):
    for i in range(n):
        yield make(i)
    raise _Broken("the source broke mid-way")


@pytest.mark.parametrize("mode", ["incremental", "full"])
@pytest.mark.parametrize("broken", ["interactions", "impressions", "items", "users"])
def test_import_bulk_is_all_or_nothing(store, mode: str, broken: str) -> None:
    store.append_many([hunch("u0", "p0", 1), Impression("u0", ("p0",), 2)])
    store.upsert_items([{"ITEM_ID": "p0", "CATEGORY": "c"}])
    store.upsert_users([{"USER_ID": "u0", "AGE": 20}])
    before = snapshot(store)
    sources = {
        "interactions": lambda i: hunch(f"u{i}", f"p{i}", 1000 + i),
        "impressions": lambda i: Impression(f"u{i}", (f"p{i}",), 1000 + i),
        "items": lambda i: {"ITEM_ID": f"p{i}", "CATEGORY": "new"},
        "users": lambda i: {"USER_ID": f"u{i}", "AGE": i},
    }
    args = {name: [make(i) for i in range(300)] for name, make in sources.items()}
    args[broken] = _fails_after(300, sources[broken])
    with pytest.raises(_Broken):
        store.import_bulk(**args, mode=mode)
    assert snapshot(store) == before
    # and the store still works afterwards
    assert store.append(hunch("u5", "p5", 5)) is True


def test_one_store_shared_by_threads(store) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for b in range(20):
                store.append_many(hunch("u-shared", f"p{i}", b, event_id=f"{b}-{i}")
                                  for i in range(50))  # same user and ids in every thread
                store.append(hunch(f"u{t}", "solo", b))
                store.latest_events(f"u{t}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.counts()["interactions"] == 20 * 50 + 4 * 20



# --------------------------------------------------------------------- round trip, dedup


def test_every_field_survives_a_round_trip(open_store) -> None:
    full = Interaction("u1", "p1", "Hunch", 1_700_000_000, 0.75, ("p1", "p2", "p3"),
                       "rec-1", "evt-1")
    bare = Interaction("u2", "p9", "", 1_700_000_001)  # no type, value, list or rec id
    seen = Impression("u1", ("p4", "p5"), 1_700_000_002, "rec-2", "evt-2")
    by_rec = Impression("u3", (), 1_700_000_003, "rec-3")
    odd = Interaction("ü ✓", "p'; DROP TABLE events; --", "HUNCH", 1_700_000_004,
                      -1.5, ("a b", "ç"), None, "evt-odd")
    with open_store() as s:
        assert s.append_many([full, bare, seen, by_rec, odd]) == 5
    with open_store() as s:  # another process would see the same
        assert list(s.interactions()) == [full, bare, odd]
        assert list(s.impressions()) == [seen, by_rec]
        assert [e for _, e in s.events_since(0)] == [full, bare, seen, by_rec, odd]
        assert s.latest_events("u1") == {"Hunch": [full]}


def test_an_event_id_is_stored_once_across_append_and_bulk_import(open_store) -> None:
    writer, importer = open_store(), open_store()
    assert writer.append(hunch("u1", "p1", 100, event_id="live-1")) is True
    counts = importer.import_bulk(
        [hunch("u1", "other", 1, event_id="live-1"),  # its user appended it: ignored
         hunch("u1", "p2", 101, event_id="bulk-1"),
         hunch("u1", "p3", 102, event_id="bulk-1")],  # repeated within the import
        [Impression("u1", ("p4",), 103, event_id="bulk-1"),  # an impression, same id
         Impression("u1", ("p5",), 104, event_id="bulk-2")])
    assert counts == ImportCounts(interactions=1, impressions=1, items=0, users=0)
    assert writer.append(hunch("u1", "p6", 105, event_id="bulk-2")) is False
    assert writer.append_many([hunch("u1", "p7", 106, event_id="bulk-1"),
                               hunch("u1", "p8", 107, event_id="live-2")]) == 1
    assert [(e.event_id, getattr(e, "item_id", None)) for _, e in writer.events_since(0)] == [
        ("live-1", "p1"), ("bulk-1", "p2"), ("bulk-2", None), ("live-2", "p8")]


# --------------------------------------------------------------------- sequence tail


def test_a_follower_never_skips_an_event_under_concurrent_writers(open_store) -> None:
    """Four writers (each its own store object, as separate hosts) append while a
    follower tails events_since: every stored event reaches the follower exactly once,
    in increasing sequence order. A number handed out before a lower one commits would
    be skipped for good."""
    writers = [open_store() for _ in range(4)]
    follower = open_store()
    done = threading.Event()
    errors: list[BaseException] = []
    followed: list[tuple[int, str]] = []

    def write(k: int, store) -> None:
        try:
            for b in range(40):
                # ids overlap between writers: duplicates are skipped, never followed twice
                store.append_many(hunch(f"u{k}", f"p{i}", b, event_id=f"e{(k * 40 + b) // 2}-{i}")
                                  for i in range(10))
                store.append(Impression(f"u{k}", ("p1",), b, event_id=f"m{k}-{b}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def follow() -> None:
        last = 0
        try:
            while True:
                finished = done.is_set()  # read before the query: a final full pass
                batch = follower.events_since(last, limit=7)
                followed.extend((seq, e.event_id) for seq, e in batch)
                if batch:
                    last = batch[-1][0]
                elif finished:
                    return
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    tail = threading.Thread(target=follow)
    tail.start()
    threads = [threading.Thread(target=write, args=(k, s)) for k, s in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    tail.join()
    assert errors == []
    stored = [(seq, e.event_id) for seq, e in follower.events_since(0, limit=100_000)]
    assert len(stored) == 4 * 40 // 2 * 10 + 4 * 40
    assert followed == stored
    assert [seq for seq, _ in followed] == sorted({seq for seq, _ in followed})
    assert follower.last_seq() == stored[-1][0]


def test_seq_before_and_interacting_users_since(store) -> None:
    store.append_many([hunch("u1", "p1", 100), hunch("u2", "p2", 200),
                       Impression("u3", ("p1",), 300)])
    first, second, third = (seq for seq, _ in store.events_since(0))
    assert store.seq_before(150) == first  # tail from here: only events after ts 150
    assert [getattr(e, "item_id", None) for _, e in store.events_since(store.seq_before(150))] == [
        "p2", None]
    assert store.seq_before(1_000) == store.last_seq()
    assert store.interacting_users_since(0) == (third, {"u1", "u2"}, True)
    assert store.interacting_users_since(0, limit=1) == (first, {"u1"}, False)
    assert store.interacting_users_since(third) == (third, set(), True)


def test_latest_interactions_follow_events_stored_by_another_store(open_store) -> None:
    writer = open_store()
    writer.append(hunch("u1", "p1", 100))
    writer.upsert_users([{"USER_ID": "u1", "AGE": 30}])
    clock = [0.0]
    cache = LatestInteractionsCache(open_store(), per_type=2, user_ttl_seconds=60,
                                    clock=lambda: clock[0])
    recent, user = cache.get("u1")
    assert recent == {"hunch": ["p1"]} and user["AGE"] == 30
    writer.append_many([hunch("u1", "p2", 101), hunch("u1", "p3", 102, event_type="Hunch"),
                        hunch("u2", "p9", 103, event_type="COMMENT")])
    assert cache.get("u1")[0] == {"hunch": ["p2", "p3"]}  # the newest two, oldest first
    assert cache.get("u2")[0] == {"comment": ["p9"]}


class CountingReads:
    """A store that counts the reads a latest-interactions cache makes of it."""

    def __init__(self, store) -> None:
        self.store = store
        self.reads: list[str] = []

    def __getattr__(self, name: str):
        method = getattr(self.store, name)

        def counted(*args, **kwargs):
            self.reads.append(name)
            return method(*args, **kwargs)
        return counted


def test_latest_interactions_read_the_head_once_per_request_and_miss_no_event(
        open_store) -> None:
    from recsys.event_head import EventHead

    writer = open_store()
    writer.append(hunch("u1", "p1", 100, event_id="e1"))
    reader = CountingReads(open_store())
    head = EventHead(reader)
    cache = LatestInteractionsCache(reader, per_type=5, head=head)

    def request() -> tuple[dict, list[str]]:
        reader.reads.clear()
        with head.request():
            return cache.get("u1")[0], list(reader.reads)

    request()
    assert request() == ({"hunch": ["p1"]}, ["last_seq"])  # nothing new: one read
    writer.append(hunch("u1", "p2", 101))  # another host's vote: in the very next request
    recent, reads = request()
    assert recent == {"hunch": ["p1", "p2"]} and "interacting_users_since" in reads
    # A repeated event id (stored once) may still take a sequence number (PostgreSQL):
    # followed once, then nothing is read again until something new arrives.
    assert not writer.append(hunch("u1", "p1", 100, event_id="e1"))
    request()
    assert request() == ({"hunch": ["p1", "p2"]}, ["last_seq"])


def test_a_users_context_is_read_in_one_call_on_a_cache_miss(open_store) -> None:
    from recsys.event_head import EventHead

    writer = open_store()
    writer.append_many([hunch("u1", "p1", 100), hunch("u1", "p2", 101, event_type="Comment"),
                        hunch("u1", "p3", 102), hunch("u2", "p4", 103)])
    writer.upsert_users([{"USER_ID": "u1", "AGE": 30}])
    reader = CountingReads(open_store())
    head = EventHead(reader)
    cache = LatestInteractionsCache(reader, per_type=1, head=head)
    with head.request():
        cache.get("u2")  # the cache's first request reads where the store stands
    for user, expected in (("u1", ({"comment": ["p2"], "hunch": ["p3"]},
                                    {"USER_ID": "u1", "AGE": 30})),
                           ("u2", ({"hunch": ["p4"]}, None)),  # events, no record
                           ("u3", ({}, None))):  # unknown
        cache.clear()
        reader.reads.clear()
        with head.request():
            assert cache.get(user) == expected
        assert reader.reads == ["last_seq", "user_context"]  # the head, then one read
        assert reader.store.user_context(user, per_type=1) == (
            reader.store.latest_item_ids(user, per_type=1), reader.store.get_user(user))


def test_a_users_context_is_one_postgresql_statement(postgres_url, monkeypatch) -> None:
    """On PostgreSQL a feed request for a user not in the cache reads the user's latest
    interactions and record in one round trip (two before)."""
    import psycopg

    from recsys.event_head import EventHead

    open_event_store(postgres_url, upgrade=True).close()
    with open_event_store(postgres_url) as store:
        store.append_many([hunch("u1", "p1", 100), hunch("u2", "p2", 101)])
        store.upsert_users([{"USER_ID": "u1", "AGE": 30}, {"USER_ID": "u2", "AGE": 40}])
        head = EventHead(store)
        cache = LatestInteractionsCache(store, per_type=5, head=head)
        statements: list[str] = []
        real_execute = psycopg.Cursor.execute

        def counted(cursor, query, *args, **kwargs):
            if str(query).strip():  # the pool's empty liveness check is not a read
                statements.append(str(query))
            return real_execute(cursor, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted)

        def request(user: str) -> int:
            statements.clear()
            with head.request():
                cache.get(user)
            return len(statements)

        request("u1")  # the first: reads where the store stands
        cached = request("u1")  # the head only
        missed = request("u2")
        assert missed - cached == 1, statements


def test_a_batch_of_recommendations_reads_back_as_recorded(store) -> None:
    """What the recommendation log writes: the first of an id is kept (within a batch
    too), item lists come back in their order, whatever their text."""
    odd = ["p,1]", 'p "2"', "sondage-\u00e9t\u00e9-\u2603", "p\\4", "{p5}"]
    assert store.record_recommendations([
        ("rec-a", "u1", odd, 100), ("rec-b", "u \"2\"", ["p1"], 101),
        ("rec-a", "u1", ["p9"], 102)]) == 2
    assert store.record_recommendations([("rec-b", "u2", ["p9"], 103),
                                         ("rec-c", "u3", [], 104)]) == 1
    assert store.recommendation_items("rec-a") == tuple(odd)
    assert store.recommendation_items("rec-b") == ("p1",)
    assert store.recommendation_items("rec-c") == ()
    store.append(Impression("u1", (), 150, "rec-a"))  # implicit: rec-a's polls
    assert store.impression_counts() == {item: 1 for item in odd}


def test_a_batch_of_recommendations_is_one_postgresql_statement(postgres_url,
                                                                 monkeypatch) -> None:
    """The recommendation log's write is one statement with one JSON parameter: text
    arrays cost psycopg a regex escape per element, and an explicit transaction two more
    round trips (BEGIN, COMMIT) for a statement that is atomic by itself."""
    import psycopg

    open_event_store(postgres_url, upgrade=True).close()
    with open_event_store(postgres_url) as store:
        store.record_recommendation("warm", "u0", ["p0"], 99)  # the pool's first checks
        statements: list[tuple[str, object]] = []
        transactions: list[object] = []
        real_execute, real_transaction = psycopg.Cursor.execute, psycopg.Connection.transaction

        def counted(cursor, query, params=None, *args, **kwargs):
            if str(query).strip():  # the pool's empty liveness check is not a write
                statements.append((str(query), params))
            return real_execute(cursor, query, params, *args, **kwargs)

        def transaction(conn, *args, **kwargs):
            transactions.append(conn)
            return real_transaction(conn, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted)
        monkeypatch.setattr(psycopg.Connection, "transaction", transaction)
        assert store.record_recommendations(
            [(f"rec-{i}", "u1", [f"p{k}" for k in range(20)], 100 + i) for i in range(5)]) == 5
        assert transactions == [] and len(statements) == 1, statements
        (params,) = [statements[0][1]]
        assert len(params) == 1 and isinstance(params[0], str)
        assert store.recommendation_items("rec-4") == tuple(f"p{k}" for k in range(20))


# --------------------------------------------------------------------- catalog


def test_the_catalog_sequence_follows_edits_and_survives_a_full_import(open_store) -> None:
    writer, worker = open_store(), open_store()
    seen = worker.catalog_seq()
    writer.upsert_items([{"ITEM_ID": "a", "CATEGORY": "X"}, {"ITEM_ID": "b"}])
    seq, records = worker.items_updated_since(seen)
    assert seq > seen and sorted(records) == ["a", "b"]
    assert worker.items_updated_since(seq) == (seq, {})
    writer.upsert_item({"ITEM_ID": "a", "CATEGORY": "Y"}, acting_user="ann", admin=True)
    later, records = worker.items_updated_since(seq)
    assert later > seq and list(records) == ["a"] and records["a"]["CATEGORY"] == "Y"
    assert worker.items_updated_since(seen, limit=1)[1].keys() == {"b"}  # oldest first
    assert worker.catalog_seq() == later
    # a full import deletes the polls but never reuses a number a worker has seen
    writer.import_bulk(items=[{"ITEM_ID": "again"}], mode="full")
    newest, records = worker.items_updated_since(later)
    assert list(records) == ["again"] and newest > later
    assert worker.count_items() == 1
    assert worker.get_items(["again", "a", "nope"]) == {"again": {"ITEM_ID": "again"}}
    assert worker.unknown_item_ids(["again", "a", "nope", "a"]) == ["a", "nope"]


def test_ownership_is_checked_in_the_write_transaction(store) -> None:
    created = store.upsert_item({"ITEM_ID": "p", "CATEGORY": "X"}, acting_user="ann")
    assert created["AUTHOR_ID"] == "ann" and created["CREATION_TIMESTAMP"] > NOW - 365 * DAY
    with pytest.raises(NotPollAuthor, match="another author"):
        store.upsert_item({"ITEM_ID": "p", "QUESTION": "mine now"}, acting_user="bob")
    with pytest.raises(NotPollAuthor, match="give a poll"):
        store.upsert_item({"ITEM_ID": "p", "AUTHOR_ID": "bob"}, acting_user="ann")
    with pytest.raises(NotPollAuthor, match="must be the caller"):
        store.upsert_item({"ITEM_ID": "new", "AUTHOR_ID": "ann"}, acting_user="bob")
    store.upsert_items([{"ITEM_ID": "orphan", "CATEGORY": "X"}])
    with pytest.raises(NotPollAuthor):  # a stored poll without author: admins only
        store.upsert_item({"ITEM_ID": "orphan", "QUESTION": "?"}, acting_user="bob")
    assert store.get_item("p") == created and store.get_item("new") is None
    edited = store.upsert_item({"ITEM_ID": "p", "QUESTION": "?"}, acting_user="bob",
                               admin=True)
    assert edited == {**created, "QUESTION": "?"}


def test_a_stored_poll_keeps_its_creation_time(store) -> None:
    """A poll's age drives its rank: an update may not re-date it (admins neither; the
    bulk import may), so both stores read the stored time in the write's transaction."""
    created = store.upsert_item({"ITEM_ID": "p", "CATEGORY": "X", "CREATION_TIMESTAMP": NOW},
                                acting_user="ann")
    for admin in (False, True):
        with pytest.raises(InvalidEvent, match="createdAt cannot change"):
            store.upsert_item({"ITEM_ID": "p", "CREATION_TIMESTAMP": NOW + 1},
                              acting_user="ann", admin=admin)
    with pytest.raises(NotPollAuthor):  # ownership first: no date told to others
        store.upsert_item({"ITEM_ID": "p", "CREATION_TIMESTAMP": NOW + 1}, acting_user="bob")
    assert store.get_item("p") == created
    again = store.upsert_item({"ITEM_ID": "p", "CREATION_TIMESTAMP": NOW, "QUESTION": "?"},
                              acting_user="ann")
    assert again == {**created, "QUESTION": "?"}
    store.upsert_items([{"ITEM_ID": "undated", "CATEGORY": "X"}])  # may still be dated
    dated = store.upsert_item({"ITEM_ID": "undated", "CREATION_TIMESTAMP": NOW},
                              acting_user="tools", admin=True)
    assert dated["CREATION_TIMESTAMP"] == NOW


def test_concurrent_first_writes_of_one_poll_leave_one_author(open_store) -> None:
    stores = [open_store() for _ in range(4)]
    outcomes: list[str] = []

    def claim(k: int) -> None:
        try:
            stores[k].upsert_item({"ITEM_ID": "contested", "QUESTION": f"by {k}"},
                                  acting_user=f"user{k}")
            outcomes.append(f"user{k}")
        except NotPollAuthor:
            outcomes.append("refused")

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "refused"]
    assert len(outcomes) == 4 and len(winners) == 1
    assert stores[0].get_item("contested")["AUTHOR_ID"] == winners[0]


# --------------------------------------------------------------------- admission


def test_live_rules_refuse_events_and_history_rules_imports(open_store) -> None:
    store = open_store(EventRules(clock=lambda: NOW))
    with pytest.raises(InvalidEvent, match="unknown event type 'DEFACE'"):
        store.append(hunch("u1", "p1", NOW, event_type="DEFACE"))
    with pytest.raises(InvalidEvent):  # one late event refuses the whole batch
        store.append_many([hunch("a", "p1", NOW), hunch("b", "p1", NOW + 365 * DAY)])
    with pytest.raises(InvalidEvent):
        store.check_live(hunch("u1", "p1", NOW - 365 * DAY))
    assert store.append(hunch("u1", "p1", NOW, event_type="comment"))  # case-insensitive
    store.import_bulk([hunch("old", "p1", NOW - 30 * DAY)])
    with pytest.raises(InvalidEvent, match="history floor"):
        store.import_bulk([hunch("x", "p1", NOW - DAY), hunch("y", "p1", 5)], mode="full")
    assert store.counts()["interactions"] == 2


def test_a_vote_counts_once_per_user_and_poll(open_store) -> None:
    """The attack: one account sends vote after vote on one poll, each a valid request
    with a new event id. A store with the server's rules keeps the first vote of a (user,
    poll) and skips the rest as already counted, whichever way they come (append, a
    batch, an import, another host's store object, another spelling of the type);
    comments repeat, other users and other polls are not limited."""
    store = open_store(EventRules(clock=lambda: NOW))
    assert store.append(hunch("u1", "p1", NOW, event_id="v1")) is True
    assert store.append(hunch("u1", "p1", NOW + 1, event_id="v2")) is False
    assert store.append(hunch("u1", "p1", NOW + 2, event_id="v3", event_type=" hunch")) is False
    assert store.append_many([hunch("u1", "p1", NOW, event_id=f"x{k}") for k in range(50)]) == 0
    assert store.append_many([hunch("u2", "p1", NOW, event_id=f"y{k}") for k in range(3)]) == 1
    assert store.append(hunch("u1", "p2", NOW, event_id="v4")) is True
    for k in range(2):  # comments are not votes
        assert store.append(hunch("u1", "p1", NOW, event_id=f"c{k}", event_type="COMMENT"))
    imported = store.import_bulk([hunch("u1", "p1", NOW - DAY, event_id="i1"),
                                  hunch("u3", "p1", NOW - DAY, event_id="i2"),
                                  hunch("u3", "p1", NOW - DAY, event_id="i3")])
    assert imported.interactions == 1
    assert not open_store(EventRules(clock=lambda: NOW)).append(hunch("u1", "p1", NOW,
                                                                       event_id="v9"))
    votes = sorted((e.user_id, e.item_id, e.event_id) for e in store.interactions()
                   if e.event_type.strip().upper() == "HUNCH")
    assert votes == [("u1", "p1", "v1"), ("u1", "p2", "v4"), ("u2", "p1", "y0"),
                     ("u3", "p1", "i2")]
    assert store.counts()["interactions"] == 6
    # A repeat names the event that counts: the same id, or the poll's first vote.
    assert store.counted_event_id(hunch("u1", "p1", NOW, event_id="v2")) == "v1"
    assert store.counted_event_id(hunch("u1", "p1", NOW, event_id="c1",
                                        event_type="COMMENT")) == "c1"
    assert store.counted_event_id(hunch("u3", "p1", NOW, event_id="new")) == "i2"
    assert store.counted_event_id(hunch("u4", "p1", NOW, event_id="new")) is None
    assert store.counted_event_id(hunch("u1", "p9", NOW, event_id="v1")) == "v1"  # its id
    # The rule is the server's: a store told no type counts once keeps every repeat.
    free = open_store(EventRules(clock=lambda: NOW, once_per_poll=()))
    assert free.append(hunch("u5", "p1", NOW, event_id="f1"))
    assert free.append(hunch("u5", "p1", NOW, event_id="f2"))


def test_concurrent_votes_of_one_user_on_one_poll_store_one(open_store) -> None:
    """Votes sent at once through different store objects (workers, hosts): the unique
    index, not a read before the write, decides, so exactly one is stored."""
    stores = [open_store(EventRules(clock=lambda: NOW)) for _ in range(4)]
    start = threading.Barrier(len(stores))
    stored: list[bool] = []

    def vote(k: int) -> None:
        start.wait()
        stored.append(stores[k].append(hunch("u1", "p1", NOW, event_id=f"tap-{k}")))

    threads = [threading.Thread(target=vote, args=(k,)) for k in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(stored) == [False, False, False, True]
    assert stores[0].counts()["interactions"] == 1


def test_a_full_import_starts_the_votes_again(open_store) -> None:
    store = open_store(EventRules(clock=lambda: NOW))
    assert store.append(hunch("u1", "p1", NOW, event_id="v1"))
    store.import_bulk([hunch("u2", "p1", NOW - DAY)], mode="full")
    assert store.append(hunch("u1", "p1", NOW, event_id="v2"))  # v1 is gone with the import


def test_ids_at_the_schema_limit_are_fine_and_one_more_is_not(store) -> None:
    assert store.append(hunch("u" * MAX_ID_LENGTH, "p1", 1))
    with pytest.raises(InvalidEvent, match="too long"):
        store.append(hunch("u" * (MAX_ID_LENGTH + 1), "p1", 1))


def test_text_either_store_cannot_keep_is_refused_as_invalid(store) -> None:
    """A NUL character cannot be stored by PostgreSQL: both stores' callers get
    InvalidEvent (or store it, on SQLite), never a driver error."""
    for write in (lambda: store.append(hunch("u\x00", "p1", 1)),
                  lambda: store.upsert_items([{"ITEM_ID": "p1", "QUESTION": "a\x00b"}])):
        try:
            write()
        except InvalidEvent as exc:
            assert "NUL" in str(exc)


# --------------------------------------------------------------------- lifecycle


def test_a_closed_store_says_so(open_store) -> None:
    s = open_store()
    s.check_writable()
    s.close()
    s.close()  # harmless
    with pytest.raises(EventStoreError, match="closed"):
        s.append(hunch("u1", "p1", 1))
    with pytest.raises(EventStoreError, match="closed"):
        s.check_writable()
    assert issubclass(EventStoreError, HunchError)


def test_a_url_the_factory_cannot_use_is_named_and_a_server_down_at_open_is_retryable(
) -> None:
    with pytest.raises(InvalidStoreUrl, match="sqlite:///path.*postgresql://"):
        open_event_store("mysql://h/db")
    # a gateway may start while PostgreSQL is down: the error comes with the first call
    with PostgresEventStore(f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                            pool_timeout=DOWN_POOL_TIMEOUT_SECONDS) as store:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            store.append(hunch("u1", "p1", 1))


_APPEND_AND_ACK = """
import sys
from recsys.event_stores import open_event_store
from recsys.events import Interaction
store = open_event_store(sys.argv[1])
i = 0
while True:
    batch = [Interaction(f"u{i % 7}", f"p{(i + k) % 50}", "HUNCH", 1_700_000_000 + i,
                         event_id=f"ack-{i}-{k}") for k in range(3)]
    store.append_many(batch)
    print(i, flush=True)  # the ack: only after append_many returned
    i += 1
"""


def test_appends_acknowledged_by_a_killed_writer_are_kept(store_url, open_store) -> None:
    """kill -9 of a gateway process mid-write loses no acknowledged event."""
    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", _APPEND_AND_ACK, store_url],
                             env=dict(os.environ, PYTHONPATH=str(repo)),
                             stdout=subprocess.PIPE, text=True)
    try:
        acked = [int(child.stdout.readline()) for _ in range(100)]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert acked == list(range(100)), "the child stopped acknowledging appends"
    with open_store() as store:
        stored = {e.event_id for e in store.interactions()}
    assert {f"ack-{i}-{k}" for i in acked for k in range(3)} <= stored
    assert len(stored) % 3 == 0  # whole batches only


# --------------------------------------------------------------------- PostgreSQL faults


@pytest.fixture
def restarted(postgres_server):
    """The shared server, started again however the test ends."""
    yield postgres_server
    if postgres_server.proc is None:
        postgres_server.start()


def _until_up(work):
    deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
    while True:
        try:
            return work()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_restart_fails_writes_with_a_retryable_error_then_recovers(
        restarted, postgres_url) -> None:
    store = PostgresEventStore(postgres_url, pool_timeout=DOWN_POOL_TIMEOUT_SECONDS,
                               upgrade=True)
    try:
        assert store.append(hunch("u1", "p1", 1, event_id="before"))
        restarted.stop()
        for call in (lambda: store.append(hunch("u1", "p2", 2, event_id="while-down")),
                     lambda: store.import_bulk([hunch("u1", "p3", 3)]),
                     lambda: store.upsert_item({"ITEM_ID": "p"}, acting_user="ann"),
                     store.last_seq, store.check_writable):
            with pytest.raises(StoreUnavailable, match="unreachable.*retry") as info:
                call()
            assert info.value.retryable is True and isinstance(info.value, EventStoreError)
        restarted.start()
        # the same store object, no reopening: the pool reconnects
        assert _until_up(lambda: store.append(hunch("u1", "p2", 2, event_id="after")))
        assert [e.event_id for _, e in store.events_since(0)] == ["before", "after"]
        store.check_writable()
    finally:
        store.close()


def test_acknowledged_appends_survive_a_server_crash(restarted, postgres_url) -> None:
    acked: list[str] = []
    failures: list[BaseException] = []
    store = PostgresEventStore(postgres_url, pool_timeout=DOWN_POOL_TIMEOUT_SECONDS,
                               upgrade=True)

    def write() -> None:
        for b in range(100_000):
            batch = [hunch(f"u{b % 7}", f"p{i}", b, event_id=f"ack-{b}-{i}") for i in range(5)]
            try:
                store.append_many(batch)
            except StoreUnavailable as exc:
                failures.append(exc)
                return
            acked.extend(e.event_id for e in batch)  # the ack: only after append returned

    writer = threading.Thread(target=write)
    try:
        writer.start()
        deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
        while len(acked) < 200 and writer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        restarted.kill()
        writer.join()
        assert len(acked) >= 200 and len(failures) == 1
        restarted.start()
        stored = _until_up(lambda: {e.event_id for e in store.interactions()})
        assert set(acked) <= stored
        assert len(stored) % 5 == 0  # whole batches only
    finally:
        store.close()


# --------------------------------------------------------------------- PostgreSQL schema


def test_an_older_schema_is_refused_until_hunch_db_upgrade(postgres_url, monkeypatch) -> None:
    from click.testing import CliRunner

    from gateway.cli import cli

    with pytest.raises(SchemaOutdated, match="hunch db upgrade"):  # a new database
        open_event_store(postgres_url)
    PostgresEventStore(postgres_url, upgrade=True).close()
    newer = [*postgres_events.MIGRATIONS, "ALTER TABLE events ADD COLUMN note TEXT"]
    monkeypatch.setattr(postgres_events, "MIGRATIONS", newer)
    monkeypatch.setattr(postgres_events, "SCHEMA_VERSION", len(newer))
    with pytest.raises(SchemaOutdated, match="hunch db upgrade"):
        open_event_store(postgres_url)
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"HUNCH_STORE_URL": postgres_url})
    assert result.exit_code == 0, result.output
    assert f"events: {len(newer)}" in result.output
    assert "filters: " in result.output and "promotions: " in result.output
    with open_event_store(postgres_url) as store:
        assert store.schema_version() == len(newer)
        store.append(hunch("u1", "p1", 1))
    # code one release behind keeps working during a rolling deploy: migrations only add
    monkeypatch.setattr(postgres_events, "SCHEMA_VERSION", len(newer) - 1)
    with open_event_store(postgres_url) as store:
        assert store.append(hunch("u1", "p2", 2))


def test_upgrade_to_per_user_event_ids_keeps_every_event(postgres_url, monkeypatch) -> None:
    import psycopg

    # A database as the release before left it: schema 1, events under a global key.
    monkeypatch.setattr(postgres_events, "MIGRATIONS", postgres_events.MIGRATIONS[:1])
    monkeypatch.setattr(postgres_events, "SCHEMA_VERSION", 1)
    PostgresEventStore(postgres_url, upgrade=True).close()
    monkeypatch.undo()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (seq, event_id, kind, user_id, item_id, event_type, "
            "event_value, timestamp, impression, recommendation_id) VALUES "
            "(1, 'client-evt-42', 'interaction', 'u0002', 'p0002', 'HUNCH', NULL, 100, "
            "NULL, NULL), (2, 'e2', 'interaction', 'u0003', 'p0003', 'COMMENT', 0.5, 101, "
            "'[\"p1\"]', 'rec-1'), (4, 'm1', 'impression', 'u0002', NULL, NULL, NULL, 102, "
            "'[\"p1\",\"p2\"]', NULL)")
        conn.execute("UPDATE event_seq SET value = 5")  # number 3 and 5 were skipped
    before = [
        (1, hunch("u0002", "p0002", 100, event_id="client-evt-42")),
        (2, Interaction("u0003", "p0003", "COMMENT", 101, 0.5, ("p1",), "rec-1", "e2")),
        (4, Impression("u0002", ("p1", "p2"), 102, event_id="m1")),
    ]
    with pytest.raises(SchemaOutdated):
        open_event_store(postgres_url)
    assert postgres_events.upgrade(postgres_url)["events"] == postgres_events.SCHEMA_VERSION
    with open_event_store(postgres_url) as store:
        assert store.events_since(0) == before and store.last_seq() == 5
        assert store.append(hunch("u0003", "p0003", 200, event_id="client-evt-42")) is True
        assert store.append(hunch("u0002", "p9", 300, event_id="client-evt-42")) is False
        assert [n for n, _ in store.events_since(5)] == [6]


def test_two_hosts_upgrading_at_once_apply_each_migration_once(postgres_url) -> None:
    results: list = []

    def upgrade() -> None:
        try:
            results.append(postgres_events.upgrade(postgres_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [{"events": postgres_events.SCHEMA_VERSION}] * 4


def test_a_poll_imported_interactions_name_without_a_record_is_not_anyones_to_claim(
        store) -> None:
    """helper-63: after an import of votes on `orphan-1` (no catalog record), whoever
    named it first in upsertPoll became its author and wrote its text over its votes.
    Such a poll exists: only an internal tool may write its record."""
    store.import_bulk([hunch(f"u{k}", "orphan-1", NOW - DAY + k, event_id=f"v{k}")
                       for k in range(3)] + [hunch("u9", "listed", NOW - DAY, event_id="l",
                                                   impression=("listed", "shown-1"))],
                      [Impression("u8", ("shown-2", "listed"), NOW - DAY)],
                      items=[{"ITEM_ID": "listed", "CATEGORY": "X"}])
    # helper-66: polls only impression lists name were shown in feeds: theirs too
    for shown in ("shown-1", "shown-2"):
        with pytest.raises(NotPollAuthor, match="imported events name it"):
            store.upsert_item({"ITEM_ID": shown, "CATEGORY": "X"}, acting_user="claimant")
    with pytest.raises(NotPollAuthor, match="imported events name it"):
        store.upsert_item({"ITEM_ID": "orphan-1", "QUESTION": "Visit scam.example"},
                          acting_user="claimant")
    assert store.get_item("orphan-1") is None
    fresh = store.upsert_item({"ITEM_ID": "brand-new", "CATEGORY": "X"}, acting_user="ann")
    assert fresh["AUTHOR_ID"] == "ann"
    tool = store.upsert_item({"ITEM_ID": "orphan-1", "CATEGORY": "X", "AUTHOR_ID": "ann"},
                             acting_user="ingest", admin=True)
    assert tool["AUTHOR_ID"] == "ann"  # from now on, an ordinary poll of its author
    edited = store.upsert_item({"ITEM_ID": "orphan-1", "QUESTION": "?"}, acting_user="ann")
    assert edited["QUESTION"] == "?"
    # A full import starts the catalog again: its own orphans only.
    store.import_bulk([hunch("u1", "p1", NOW - DAY, event_id="f1")], mode="full")
    assert store.upsert_item({"ITEM_ID": "orphan-2", "CATEGORY": "X"}, acting_user="x")
    with pytest.raises(NotPollAuthor):
        store.upsert_item({"ITEM_ID": "p1", "CATEGORY": "X"}, acting_user="x")


def test_old_recommendations_are_forgotten_in_batches(store) -> None:
    store.record_recommendations([(f"old{k}", "u1", ["p1"], 100 + k) for k in range(5)]
                                 + [("new", "u1", ["p2"], 1_000)])
    assert [store.forget_recommendations_before(105, batch=2) for _ in range(4)] == [2, 2, 1, 0]
    assert store.recommendation_items("old4") is None
    assert store.recommendation_items("new") == ("p2",)


# --------------------------------------------------------------------- deleted polls


def _poll(store, poll_id: str, author: str = "ann", **fields):
    return store.upsert_item({"ITEM_ID": poll_id, "CATEGORY": "X", "QUESTION": "Tea?",
                              "DESCRIPTION": "private words", **fields}, acting_user=author)


def test_a_deleted_poll_leaves_a_tombstone_and_no_text(store, open_store) -> None:
    _poll(store, "p1")
    _poll(store, "p2")
    store.append(hunch("u1", "p1", NOW - DAY, event_id="v1"))
    seq = store.catalog_seq()
    gone = store.delete_item("p1", acting_user="ann", now=NOW)
    assert (gone.item_id, gone.author_id, gone.deleted_by, gone.deleted_at,
            gone.already) == ("p1", "ann", "ann", NOW, False)
    # The record and its text are gone from every read; the events stay (history).
    assert store.get_item("p1") is None and "p1" not in store.get_items(["p1", "p2"])
    assert [r["ITEM_ID"] for r in store.items()] == ["p2"]
    assert store.unknown_item_ids(["p1"]) == ["p1"]
    assert [e.item_id for e in store.interactions()] == ["p1"]
    assert store.deleted_item_ids(["p2", "p1", "p9"]) == ["p1"]
    # Other workers and hosts learn of it by the catalog sequence number, as of new polls.
    other = open_store()
    assert other.catalog_seq() > seq
    assert other.deletions_since(seq) == (other.catalog_seq(), {"p1": NOW})
    assert other.deletions_since(other.catalog_seq()) == (other.catalog_seq(), {})
    assert "p1" not in other.items_updated_since(seq)[1]


def test_only_a_polls_author_or_an_internal_tool_deletes_it_and_again_is_the_same(
        store) -> None:
    _poll(store, "p1")
    _poll(store, "p2")
    with pytest.raises(NotPollAuthor, match="only its author or an internal tool"):
        store.delete_item("p1", acting_user="bob")
    assert store.get_item("p1")["QUESTION"] == "Tea?"  # the refused delete changed nothing
    from recsys.admission import UnknownPolls

    with pytest.raises(UnknownPolls):
        store.delete_item("never-was", acting_user="ann")
    first = store.delete_item("p1", acting_user="ann", now=NOW)
    again = store.delete_item("p1", acting_user="ann", now=NOW + 60)
    assert again.already and again.deleted_at == first.deleted_at == NOW
    with pytest.raises(NotPollAuthor):  # a stranger learns nothing more the second time
        store.delete_item("p1", acting_user="bob")
    seq = store.catalog_seq()
    moderated = store.delete_item("p2", acting_user="moderator", admin=True, now=NOW)
    assert (moderated.author_id, moderated.deleted_by) == ("ann", "moderator")
    assert store.catalog_seq() == seq + 1


def test_a_deleted_polls_id_is_never_written_again(store) -> None:
    from recsys.admission import DeletedPolls

    _poll(store, "p1")
    store.delete_item("p1", acting_user="ann")
    for user, admin in (("ann", False), ("bob", False), ("tools", True)):
        with pytest.raises(DeletedPolls, match="stays deleted"):
            store.upsert_item({"ITEM_ID": "p1", "CATEGORY": "X", "QUESTION": "back"},
                              acting_user=user, admin=admin)
    assert store.upsert_items([{"ITEM_ID": "p1", "CATEGORY": "X"}]) == 0  # bulk: skipped
    counts = store.import_bulk(items=[{"ITEM_ID": "p1", "CATEGORY": "X", "AUTHOR_ID": "bob",
                                       "QUESTION": "resurrected"},
                                      {"ITEM_ID": "p3", "CATEGORY": "X"}])
    assert counts.items == 1
    assert store.get_item("p1") is None and store.get_item("p3") is not None
    # A full import starts events and the catalog again; tombstones stay.
    store.import_bulk([hunch("u1", "p3", NOW - DAY, event_id="f1")],
                      items=[{"ITEM_ID": "p1", "CATEGORY": "X"}], mode="full")
    assert store.get_item("p1") is None and store.deleted_item_ids(["p1"]) == ["p1"]


def test_events_on_a_deleted_poll_are_refused_and_nothing_of_the_batch_is_stored(
        open_store) -> None:
    from recsys.admission import DeletedPolls

    store = open_store(EventRules(clock=lambda: NOW))
    _poll(store, "p1")
    _poll(store, "p2")
    store.delete_item("p1", acting_user="ann")
    for event in (hunch("u1", "p1", NOW, event_id="v1"),
                  hunch("u1", "p2", NOW, event_id="v2", impression=("p2", "p1")),
                  Impression("u1", ("p2", "p1"), NOW, event_id="m1")):
        with pytest.raises(DeletedPolls, match="'p1' was deleted"):
            store.append(event)
        with pytest.raises(DeletedPolls):
            store.append_many([hunch("u2", "p2", NOW, event_id="ok"), event])
    assert store.counts()["interactions"] == store.counts()["impressions"] == 0
    assert store.append(hunch("u1", "p2", NOW, event_id="v3")) is True


def test_a_vote_racing_a_deletion_is_stored_before_it_or_refused(open_store) -> None:
    """Votes from several threads while the author deletes the poll: each vote either
    committed before the deletion (kept, as history) or is refused; none lands after."""
    from recsys.admission import DeletedPolls

    setup = open_store()
    _poll(setup, "p1")
    outcomes: list[str] = []
    start = threading.Barrier(5)

    def vote(k: int) -> None:
        voter = open_store(EventRules(clock=lambda: NOW))
        start.wait()
        for n in range(20):
            try:
                voter.append(hunch(f"u{k}-{n}", "p1", NOW, event_id=f"v{k}-{n}"))
                outcomes.append("stored")
            except DeletedPolls:
                outcomes.append("refused")

    threads = [threading.Thread(target=vote, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    deleter = open_store()
    start.wait()
    deleted_at_seq = None
    time.sleep(0.01)
    deleter.delete_item("p1", acting_user="ann")
    deleted_at_seq = deleter.last_seq()
    for t in threads:
        t.join()
    stored = deleter.events_since(0)
    assert len(stored) == outcomes.count("stored")
    assert all(seq <= deleted_at_seq for seq, _ in stored)  # nothing after the deletion


def _wait_for_lock_waiters(url: str, n: int) -> None:
    """Until ``n`` sessions of the database wait on a lock: the order writers queue in,
    read from the server (a sleep guessed it, and a loaded machine got it wrong)."""
    import psycopg

    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()").fetchone()[0]
            if waiting >= n:
                return
            time.sleep(0.01)
    raise AssertionError(f"{n} writer(s) never queued on a lock")


def test_a_deletion_racing_an_import_waits_for_it_on_postgresql(postgres_url) -> None:
    """The import takes event_seq's row lock then catalog_seq's, as every writer does;
    delete_item took them the other way round. Both queued behind a third writer, the
    import got event_seq and waited for catalog_seq, which the deletion held while it
    waited for event_seq: PostgreSQL aborted one of them (DeadlockDetected), an
    import of hours or a moderator's deletion."""
    import psycopg

    open_event_store(postgres_url, upgrade=True).close()
    with open_event_store(postgres_url) as importer, \
            open_event_store(postgres_url) as deleter:
        _poll(importer, "p1")
        failures: list[BaseException] = []

        def run(work) -> None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - asserted below
                failures.append(exc)

        with psycopg.connect(postgres_url) as holder:  # another writer, mid-append
            holder.execute("SELECT value FROM event_seq FOR UPDATE")
            imports = threading.Thread(target=run, args=(lambda: importer.import_bulk(
                [hunch("u1", "p2", NOW - DAY, event_id="i1")]),))
            imports.start()
            _wait_for_lock_waiters(postgres_url, 1)  # the import first in line
            deletes = threading.Thread(target=run, args=(lambda: deleter.delete_item(
                "p1", acting_user="ann"),))
            deletes.start()
            _wait_for_lock_waiters(postgres_url, 2)
            holder.rollback()
        for t in (imports, deletes):
            t.join(30)
        assert failures == []
        assert deleter.deleted_item_ids(["p1"]) == ["p1"]
        assert deleter.count_events(item_id="p2") == 1


def test_an_import_queued_behind_a_deletion_skips_its_polls_events_on_postgresql(
        postgres_url) -> None:
    """The tombstones an import skips events by are read under event_seq's row lock,
    which delete_item takes first: a deletion that commits while the import waits is
    seen, and the import stores nothing on the poll (read before the lock, the vote
    landed after the deletion, as an append racing it never does)."""
    import psycopg

    open_event_store(postgres_url, upgrade=True).close()
    with open_event_store(postgres_url) as importer, \
            open_event_store(postgres_url) as deleter:
        _poll(importer, "p1")
        failures: list[BaseException] = []
        counts: list[ImportCounts] = []

        def run(work) -> None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - asserted below
                failures.append(exc)

        with psycopg.connect(postgres_url) as holder:  # another writer, mid-append
            holder.execute("SELECT value FROM event_seq FOR UPDATE")
            deletes = threading.Thread(target=run, args=(lambda: deleter.delete_item(
                "p1", acting_user="ann"),))
            deletes.start()
            _wait_for_lock_waiters(postgres_url, 1)  # the deletion first in line
            imports = threading.Thread(target=run, args=(lambda: counts.append(
                importer.import_bulk([hunch("u1", "p1", NOW - DAY, event_id="late"),
                                      hunch("u1", "p2", NOW - DAY, event_id="other")])),))
            imports.start()
            _wait_for_lock_waiters(postgres_url, 2)
            holder.rollback()
        for t in (deletes, imports):
            t.join(30)
        assert failures == []
        assert counts[0].interactions == 1 and counts[0].deleted.interactions == 1
        assert deleter.count_events(item_id="p1") == 0
        assert deleter.count_events(item_id="p2") == 1


def test_an_event_only_poll_is_deleted_by_internal_tools_only(store) -> None:
    store.import_bulk([hunch("u1", "orphan-1", NOW - DAY, event_id="v1")])
    with pytest.raises(NotPollAuthor):
        store.delete_item("orphan-1", acting_user="claimant")
    gone = store.delete_item("orphan-1", acting_user="moderator", admin=True)
    assert gone.author_id is None and store.deleted_item_ids(["orphan-1"]) == ["orphan-1"]


def test_odd_poll_ids_are_refused_or_looked_up_like_any_other(store) -> None:
    from recsys.admission import UnknownPolls

    for bad in ("", "x" * (MAX_ID_LENGTH + 1), "\ud800"):
        with pytest.raises(InvalidEvent):
            store.delete_item(bad, acting_user="ann")
    store.upsert_items([{"ITEM_ID": "poll 7 ", "CATEGORY": "X", "AUTHOR_ID": "ann"},
                        {"ITEM_ID": "ünï|cödé 🎉", "CATEGORY": "X", "AUTHOR_ID": "ann"}])
    with pytest.raises(UnknownPolls):
        store.delete_item("poll 7", acting_user="ann")  # another id than "poll 7 "
    for odd in ("poll 7 ", "ünï|cödé 🎉"):
        assert store.delete_item(odd, acting_user="ann").item_id == odd
    assert store.deleted_item_ids(["poll 7 ", "poll 7", "ünï|cödé 🎉"]) == [
        "poll 7 ", "ünï|cödé 🎉"]


def test_imported_tombstones_reserve_their_ids_and_keep_the_first_deletion(
        store, open_store) -> None:
    """A restore (hunch data import of an export's deleted_polls.csv): before, a store
    had no way to take a tombstone, so every deleted id was free again after a move."""
    from recsys.admission import DeletedPolls
    from recsys.events import PollDeletion

    _poll(store, "p1")  # a poll this store still serves, deleted where the export came from
    _poll(store, "p2")
    seq = store.catalog_seq()
    first = PollDeletion("p1", "ann", "moderator", NOW - DAY)
    assert store.import_deletions([PollDeletion("p1", "ann", "ann", NOW), first,
                                   PollDeletion("gone", None, "tools", NOW)]) == 2
    assert store.get_item("p1") is None and [r["ITEM_ID"] for r in store.items()] == ["p2"]
    with pytest.raises(DeletedPolls, match="stays deleted"):
        store.upsert_item({"ITEM_ID": "p1", "CATEGORY": "X"}, acting_user="ann")
    with pytest.raises(DeletedPolls, match="stays deleted"):
        store.upsert_item({"ITEM_ID": "gone", "CATEGORY": "X"}, acting_user="eve")
    # Every worker drops them by the catalog sequence number, as after deletePoll.
    assert open_store().deletions_since(seq)[1] == {"p1": NOW - DAY, "gone": NOW}
    # Again (a second import of the same backup), or a later deletion: nothing changes.
    assert store.import_deletions([first, PollDeletion("p1", "bob", "bob", NOW + 5)]) == 0
    assert [(d.item_id, d.author_id, d.deleted_by, d.deleted_at) for d in store.deletions()
            ] == [("p1", "ann", "moderator", NOW - DAY), ("gone", None, "tools", NOW)]
    assert store.delete_item("p1", acting_user="ann").already


@pytest.mark.parametrize("bad", [("", "ann", "ann", NOW),
                                 ("p3", "ann", "", NOW), ("p3", "ann", "ann", 10**13),
                                 ("p3", "x" * (MAX_ID_LENGTH + 1), "ann", NOW),
                                 ("p3", "ann", "ann", "yesterday")])
def test_a_tombstone_no_store_would_keep_is_refused_and_nothing_is_written(
        store, bad) -> None:
    from recsys.events import PollDeletion

    _poll(store, "p2")
    before = snapshot(store)
    with pytest.raises(InvalidEvent):
        store.import_deletions([PollDeletion("p2", "ann", "ann", NOW), PollDeletion(*bad)])
    with pytest.raises(InvalidEvent):
        store.import_bulk(items=[{"ITEM_ID": "p4", "CATEGORY": "X"}],
                          deletions=[PollDeletion("p2", "ann", "ann", NOW), PollDeletion(*bad)])
    assert snapshot(store) == before and list(store.deletions()) == []


@pytest.mark.parametrize("deleted_at", [0, NOW + DAY])
def test_a_store_with_rules_takes_a_tombstones_time_by_their_history_rule(
        open_store, deleted_at) -> None:
    """As an imported event's time: a tombstone dated before the history floor or ahead
    of the clock is refused (what a store with rules imports is what the directory's
    check lets through), nothing of the batch written."""
    from recsys.events import PollDeletion

    store = open_store(EventRules(clock=lambda: NOW))
    _poll(store, "p2")
    before = snapshot(store)
    bad = PollDeletion("p3", None, "tools", deleted_at)
    with pytest.raises(InvalidEvent, match="DELETED_AT of deleted poll 'p3'"):
        store.import_deletions([PollDeletion("p2", "ann", "ann", NOW), bad])
    with pytest.raises(InvalidEvent, match="DELETED_AT of deleted poll 'p3'"):
        store.import_bulk([hunch("u1", "p2", NOW - DAY)],
                          deletions=[PollDeletion("p2", "ann", "ann", NOW), bad])
    assert snapshot(store) == before and list(store.deletions()) == []
    assert open_store().import_deletions([bad]) == 1  # without rules: a date is enough


@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_an_import_stores_its_tombstones_first_and_all_or_nothing(store, mode) -> None:
    from recsys.events import PollDeletion

    _poll(store, "p1")
    tombstones = [PollDeletion("p1", "ann", "ann", NOW), PollDeletion("p3", "bob", "bob", NOW)]
    before = snapshot(store)
    with pytest.raises(_Broken):
        store.import_bulk(_fails_after(3, lambda i: hunch(f"u{i}", "p2", NOW - i)),
                          deletions=tombstones, mode=mode)
    assert snapshot(store) == before and list(store.deletions()) == []
    counts = store.import_bulk([hunch("u1", "p2", NOW - DAY)],
                               items=[{"ITEM_ID": "p3", "CATEGORY": "X", "QUESTION": "back"},
                                      {"ITEM_ID": "p2", "CATEGORY": "X"}],
                               deletions=tombstones, mode=mode)
    assert (counts.deletions, counts.items) == (2, 1)  # p3's row skipped: deleted
    assert [r["ITEM_ID"] for r in store.items()] == ["p2"]
    assert store.deleted_item_ids(["p1", "p2", "p3"]) == ["p1", "p3"]


@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_an_import_skips_events_on_deleted_polls_as_an_append_refuses_them(
        store, open_store, mode) -> None:
    """Appends of events naming a deleted poll are refused; an import stored them, for a
    poll deleted in the store or by the import's own tombstones (deleted_polls.csv):
    its votes trained again, its id sat in impression lists and came back in exports.
    They are skipped (an import of history goes on), counted, and lists trimmed."""
    from recsys.events import LeftOut, PollDeletion, named_polls

    for p in ("p1", "p2"):
        _poll(store, p)
    store.delete_item("p1", acting_user="ann", now=NOW - DAY)
    tombstone = PollDeletion("p3", None, "tools", NOW - DAY)  # deleted by this import
    acted = [hunch("u1", "p1", NOW - 9 * DAY, event_id="on-deleted"),
             hunch("u2", "p3", NOW - 8 * DAY, event_id="on-own-tombstone"),
             hunch("u3", "p2", NOW - 7 * DAY, event_id="shown-with", impression=("p1", "p2", "p3")),
             hunch("u3", "p4", NOW - 7 * DAY, event_id="fine", impression=("p4",))]
    shown = [Impression("u4", ("p1",), NOW - 6 * DAY, event_id="only-deleted"),
             Impression("u5", ("p3", "p2"), NOW - 5 * DAY, event_id="trimmed"),
             Impression("u6", ("p3",), NOW - 4 * DAY, "rec-1", event_id="by-recommendation")]
    counts = store.import_bulk(acted, shown, mode=mode, deletions=[tombstone])
    assert (counts.interactions, counts.impressions) == (2, 2)
    assert counts.deleted == LeftOut(interactions=2, impressions=1, lists=3)
    reader = open_store()
    assert [(e.event_id, e.item_id, e.impression) for e in reader.interactions()] == [
        ("shown-with", "p2", ("p2",)), ("fine", "p4", ("p4",))]
    # The recommendation id stays: the response it names is what was shown.
    assert [(e.event_id, e.item_ids, e.recommendation_id) for e in reader.impressions()] == [
        ("trimmed", ("p2",), None), ("by-recommendation", (), "rec-1")]
    assert not {"p1", "p3"} & set(named_polls([*reader.interactions(),
                                               *reader.impressions()]))
    # Again: the trimmed events keep their ids (derived from the lists as written), so
    # nothing is new, and the same is skipped.
    again = store.import_bulk(acted, shown, deletions=[tombstone])
    assert (again.interactions, again.impressions, again.deleted) == (0, 0, counts.deleted)
    assert reader.counts()["interactions"] == 2 and reader.count_events(item_id="p1") == 0


def test_tombstones_are_read_in_deletion_order_across_pages(
        store, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.events import PollDeletion

    monkeypatch.setattr(events_module, "PAGE_SIZE", 3)  # force several pages
    monkeypatch.setattr(postgres_events, "PAGE_SIZE", 3)
    polls = [f"p{i}" for i in (5, 1, 7, 3, 9, 2, 8)]
    for p in polls[:4]:
        _poll(store, p)
        store.delete_item(p, acting_user="ann", now=NOW)
    store.import_deletions(PollDeletion(p, None, "tools", NOW + 1) for p in polls[4:])
    assert [d.item_id for d in store.deletions()] == polls


def test_a_database_before_deleted_polls_is_upgraded_and_keeps_its_polls(
        postgres_url, monkeypatch) -> None:
    monkeypatch.setattr(postgres_events, "MIGRATIONS", postgres_events.MIGRATIONS[:4])
    monkeypatch.setattr(postgres_events, "SCHEMA_VERSION", 4)
    PostgresEventStore(postgres_url, upgrade=True).close()
    monkeypatch.undo()
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as schema 4 wrote it
        conn.execute("INSERT INTO items VALUES ('p1', '{\"CATEGORY\": \"X\", "
                     "\"AUTHOR_ID\": \"ann\"}', 1)")
    with pytest.raises(SchemaOutdated):
        open_event_store(postgres_url)
    assert postgres_events.upgrade(postgres_url)["events"] == postgres_events.SCHEMA_VERSION
    with open_event_store(postgres_url) as store:
        assert store.delete_item("p1", acting_user="ann").author_id == "ann"
        assert store.get_item("p1") is None


def test_a_host_one_release_behind_cannot_write_a_deleted_poll_back(postgres_url) -> None:
    """Code one release behind neither reads nor honours tombstones: during a rolling
    deploy its upsert (the statement it runs, below) brought a deleted poll back, text
    and author, served at once. The database now skips the row itself."""
    import json

    import psycopg

    open_event_store(postgres_url, upgrade=True).close()
    with open_event_store(postgres_url) as store:
        _poll(store, "p1")
        store.delete_item("p1", acting_user="ann")
        old_release_upsert = (
            "INSERT INTO items (item_id, fields, updated_seq) "
            "VALUES (%(id)s, hunch_merge_patch('{}', %(fields)s::jsonb), %(seq)s) "
            "ON CONFLICT (item_id) DO UPDATE SET "
            "fields = hunch_merge_patch(items.fields, %(fields)s::jsonb), updated_seq = %(seq)s")
        with psycopg.connect(postgres_url, autocommit=True) as old_host:
            written = old_host.execute(old_release_upsert, {
                "id": "p1", "seq": 10_000, "fields": json.dumps(
                    {"AUTHOR_ID": "mallory", "QUESTION": "back again?"})}).rowcount
            assert written == 0
            old_host.execute(old_release_upsert, {"id": "p9", "seq": 10_001, "fields": "{}"})
        assert store.get_item("p1") is None
        assert store.get_item("p9") is not None  # other polls are written as before
        assert store.deleted_item_ids(["p1"]) == ["p1"]
