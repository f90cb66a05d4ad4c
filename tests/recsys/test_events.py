"""The durable event store, tested on real SQLite files and real processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from recsys import events as events_module
from recsys.errors import HunchError, InvalidEvent
from recsys.events import (
    EventStore,
    EventStoreError,
    ImportCounts,
    Impression,
    Interaction,
)
from recsys.schemas import MAX_ID_LENGTH

REPO_ROOT = Path(__file__).resolve().parents[2]


def hunch(user: str, poll: str, ts: int, **kw) -> Interaction:
    return Interaction(user, poll, kw.pop("event_type", "HUNCH"), ts, **kw)


def snapshot(store: EventStore) -> tuple:
    """Everything a user of the store can observe."""
    return (
        list(store.interactions()), list(store.impressions()), list(store.items()),
        list(store.users()), store.counts(), store.last_seq(), store.impression_counts(),
    )


@pytest.fixture
def store(tmp_path: Path):
    with EventStore(tmp_path / "events.db") as s:
        yield s


def run_child(code: str, *args: str, **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, **popen)


# --------------------------------------------------------------------- round trip


def test_every_field_survives_a_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "events.db"  # parent dirs are created
    full = Interaction("u1", "p1", "Hunch", 1_700_000_000, 0.75, ("p1", "p2", "p3"),
                       "rec-1", "evt-1")
    bare = Interaction("u2", "p9", "", 1_700_000_001)  # no type, value, list or rec id
    seen = Impression("u1", ("p4", "p5"), 1_700_000_002, "rec-2", "evt-2")
    by_rec = Impression("u3", (), 1_700_000_003, "rec-3")
    with EventStore(path) as s:
        assert s.append_many([full, bare, seen, by_rec]) == 4

    with EventStore(path) as s:  # a new process would see the same
        assert list(s.interactions()) == [full, bare]
        assert list(s.impressions()) == [seen, by_rec]
        assert [e for _, e in s.events_since(0)] == [full, bare, seen, by_rec]
        assert s.latest_events("u1") == {"Hunch": [full]}


def test_catalog_records_are_upserted_by_merging_fields(store: EventStore) -> None:
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


def test_a_later_duplicate_event_id_is_ignored_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = hunch("u1", "p1", 100, event_id="e1")
    again = hunch("u1", "p2", 200, event_id="e1")  # same id, different content
    with EventStore(path) as s:
        assert s.append(first) is True
        assert s.append(again) is False
        # within one batch, and against what is already stored
        assert s.append_many([hunch("u1", "p3", 300, event_id="e2"),
                              hunch("u1", "p4", 400, event_id="e2"), first]) == 1
    with EventStore(path) as other:  # a separate store instance
        assert other.append(again) is False
        assert other.append(Impression("u1", ("p1",), 500, event_id="e2")) is False
        assert [e.item_id for e in other.interactions()] == ["p1", "p3"]
        assert other.counts()["interactions"] == 2
        assert other.counts()["impressions"] == 0


def test_events_without_an_id_are_deduplicated_by_content(store: EventStore) -> None:
    assert store.append(hunch("u1", "p1", 100)) is True
    assert store.append(hunch("u1", "p1", 100)) is False
    assert store.append(hunch("u1", "p1", 101)) is True


# --------------------------------------------------------------------- reads


def test_latest_events_are_newest_first_per_case_insensitive_type(store: EventStore) -> None:
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


def test_events_between_is_half_open_in_time_order(store: EventStore) -> None:
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
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "PAGE_SIZE", 3)  # force several pages
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


def test_counts_and_count_events(store: EventStore) -> None:
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


def test_events_since_lets_another_process_follow_new_events(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore(path) as writer, EventStore(path) as follower:
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


def test_impression_counts_explicit_only_implicit_and_explicit_wins(store: EventStore) -> None:
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
    store: EventStore, event, fix: str
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


def test_invalid_catalog_records_are_rejected(store: EventStore) -> None:
    with pytest.raises(InvalidEvent, match="ITEM_ID of record #2"):
        store.upsert_items([{"ITEM_ID": "p1"}, {"CATEGORY": "no id"}])
    with pytest.raises(InvalidEvent, match="JSON"):
        store.upsert_users([{"USER_ID": "u1", "AGE": object()}])
    assert store.counts()["items"] == 0 and store.counts()["users"] == 0


# --------------------------------------------------------------------- bulk import


def test_import_bulk_incremental_then_full(store: EventStore) -> None:
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
def test_import_bulk_is_all_or_nothing(store: EventStore, mode: str, broken: str) -> None:
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


# --------------------------------------------------------------------- durability


_APPEND_AND_ACK = """
import sys
from recsys.events import EventStore, Interaction
store = EventStore(sys.argv[1])
i = 0
while True:
    event = Interaction(f"u{i % 7}", f"p{i % 50}", "HUNCH", 1_700_000_000 + i,
                        impression=(f"p{i % 50}", "p-other"), event_id=f"ack-{i}")
    store.append(event)
    print(event.event_id, flush=True)  # the ack: only after append returned
    i += 1
"""


def test_an_acknowledged_event_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    child = run_child(_APPEND_AND_ACK, str(path), stdout=subprocess.PIPE, text=True)
    try:
        acked = [child.stdout.readline().strip() for _ in range(200)]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert acked[-1] == "ack-199", "the child stopped acknowledging appends"
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        raw.close()
    with EventStore(path) as s:
        stored = {e.event_id for e in s.interactions()}
        assert set(acked) <= stored
        # events are whole, not torn
        assert all(e.impression == (e.item_id, "p-other") for e in s.interactions())


_APPEND_RANGE = """
import sys
from recsys.events import EventStore, Interaction, Impression
path, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = EventStore(path)
events = [Interaction(f"u{i % 13}", f"p{i % 97}", "HUNCH", i, event_id=f"e{i}")
          for i in range(start, stop)]
new = 0
for i in range(0, len(events), 25):  # batches, plus one single append per batch
    new += store.append_many(events[i:i + 24])
    new += store.append(events[i + 24]) if i + 24 < len(events) else 0
new += store.append(Impression("u0", ("p1",), start, event_id=f"m{start}"))
print(new)
"""


def test_four_processes_append_at_once_without_loss(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "events.db"  # created by whichever child opens first
    # 2,000 ids each, each range overlapping the next by 500
    ranges = [(k * 1500, k * 1500 + 2000) for k in range(4)]
    children = [
        run_child(_APPEND_RANGE, str(path), str(a), str(b),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for a, b in ranges
    ]
    outputs = [c.communicate(timeout=120) for c in children]
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, err
    distinct = 3 * 1500 + 2000
    # each id counted new by exactly one process
    assert sum(int(out) for out, _ in outputs) == distinct + 4
    with EventStore(path) as s:
        assert s.counts()["interactions"] == distinct
        assert s.counts()["impressions"] == 4
        assert {e.event_id for e in s.interactions()} == {f"e{i}" for i in range(distinct)}
        seqs = [n for n, _ in s.events_since(0, limit=100_000)]
        assert len(seqs) == distinct + 4 and seqs == sorted(set(seqs))


def test_one_store_shared_by_threads(store: EventStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for b in range(20):
                store.append_many(hunch(f"u{t}", f"p{i}", b, event_id=f"{b}-{i}")
                                  for i in range(50))  # same ids in every thread
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


# --------------------------------------------------------------------- lifecycle


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    s = EventStore(tmp_path / "events.db")
    s.close()
    s.close()  # harmless
    with pytest.raises(EventStoreError, match="closed"):
        s.append(hunch("u1", "p1", 1))
    with pytest.raises(EventStoreError, match="closed"):
        s.check_writable()
    assert issubclass(EventStoreError, HunchError)


def test_a_file_from_a_newer_engine_or_not_sqlite_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    EventStore(newer).close()
    raw = sqlite3.connect(newer)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(EventStoreError, match="newer version"):
        EventStore(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file at all" * 200)
    with pytest.raises(EventStoreError, match="not a usable event store"):
        EventStore(junk)


def test_a_writer_stuck_holding_the_lock_gives_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.db"
    monkeypatch.setattr(events_module, "BUSY_TIMEOUT_MS", 200)
    with EventStore(path) as s:
        stuck = sqlite3.connect(path, isolation_level=None)
        try:
            stuck.execute("BEGIN IMMEDIATE")  # another process mid-transaction
            with pytest.raises(EventStoreError, match="write lock"):
                s.append(hunch("u1", "p1", 1))
            with pytest.raises(EventStoreError, match="write lock"):
                s.check_writable()  # what a readiness probe reports
            assert s.counts()["interactions"] == 0  # readers are not blocked
        finally:
            stuck.close()
        s.check_writable()
        assert s.append(hunch("u1", "p1", 1)) is True  # and it recovers
