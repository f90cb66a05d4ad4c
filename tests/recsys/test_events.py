"""The SQLite event store's own properties, on real files and real processes: the file
round trip, kill -9, several processes, refused files and a stuck writer. What every
store must do is in tests/stores/test_event_store_contract.py (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.admission import EventRules
from recsys import events as events_module
from recsys.events import (
    EventStore,
    EventStoreError,
    Impression,
    Interaction,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def hunch(user: str, poll: str, ts: int, **kw) -> Interaction:
    return Interaction(user, poll, kw.pop("event_type", "HUNCH"), ts, **kw)


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


# --------------------------------------------------------------------- lifecycle


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


# Files of older releases, written with their schema verbatim (not with this code's
# constants, which move on): schema 1, and 2 = 1 plus the catalog sequence.
SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('interaction', 'impression')),
    user_id TEXT NOT NULL,
    item_id TEXT,
    event_type TEXT COLLATE NOCASE,
    event_value REAL,
    timestamp INTEGER NOT NULL,
    impression TEXT,
    recommendation_id TEXT
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (kind, timestamp);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, timestamp);
CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, fields TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, fields TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recommendations (
    recommendation_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, item_ids TEXT NOT NULL,
    timestamp INTEGER NOT NULL
) WITHOUT ROWID;
"""
SCHEMA_2 = SCHEMA_1 + """
ALTER TABLE items ADD COLUMN updated_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS items_by_update ON items (updated_seq);
CREATE TABLE IF NOT EXISTS catalog_seq (
    only INTEGER PRIMARY KEY CHECK (only = 0),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO catalog_seq (only, value) VALUES (0, 0);
"""
# What the old file holds: events numbered 1, 2, 4 (3 and 5 used up by ignored
# duplicates), and "client-evt-42", which u0003 could not send under the old key.
OLD_EVENTS = [
    (1, Interaction("u0002", "p0002", "HUNCH", 1_700_000_000, event_id="client-evt-42")),
    (2, Interaction("u0003", "p0003", "COMMENT", 1_700_000_001, 0.5, ("p0001", "p0003"),
                    "rec-1", "e2")),
    (4, Impression("u0002", ("p0001", "p0002"), 1_700_000_002, event_id="m1")),
]
OLD_LAST_SEQ = 5


def write_old_event_file(path: Path, version: int = 2) -> None:
    """An event store file as a release at schema ``version`` (1 or 2) left it."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.executescript(SCHEMA_2 if version == 2 else SCHEMA_1)
    raw.executemany(
        "INSERT INTO events (seq, event_id, kind, user_id, item_id, event_type, event_value,"
        " timestamp, impression, recommendation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(1, "client-evt-42", "interaction", "u0002", "p0002", "HUNCH", None, 1_700_000_000,
          None, None),
         (2, "e2", "interaction", "u0003", "p0003", "COMMENT", 0.5, 1_700_000_001,
          '["p0001","p0003"]', "rec-1"),
         (4, "m1", "impression", "u0002", None, None, None, 1_700_000_002,
          '["p0001","p0002"]', None)])
    raw.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (OLD_LAST_SEQ,))
    raw.execute("INSERT INTO items (item_id, fields) VALUES ('p0001', '{\"CATEGORY\":\"news\"}')")
    raw.execute(f"PRAGMA user_version = {version}")
    raw.close()


@pytest.mark.parametrize("version", [1, 2])
def test_a_file_of_an_older_release_is_migrated_without_losing_events(
        tmp_path: Path, version: int) -> None:
    path = tmp_path / "events.db"
    write_old_event_file(path, version)
    with EventStore(path) as s:
        assert s.events_since(0) == OLD_EVENTS  # every event, with its number
        # the counter moved with the table: no number is handed out twice
        assert s.last_seq() == OLD_LAST_SEQ
        assert s.get_item("p0001") == {"ITEM_ID": "p0001", "CATEGORY": "news"}
        # ids are per user now; the same user's retry is still ignored
        late = hunch("u0003", "p0003", 1_700_000_010, event_id="client-evt-42")
        assert s.append(late) is True
        assert s.append(hunch("u0002", "p9", 1_700_000_011, event_id="client-evt-42")) is False
        assert s.events_since(OLD_LAST_SEQ) == [(OLD_LAST_SEQ + 1, late)]
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == events_module.SCHEMA_VERSION
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        unique = [name for _, name, is_unique, *_ in raw.execute("PRAGMA index_list(events)")
                  if is_unique]
        assert sorted([c[2] for c in raw.execute(f"PRAGMA index_info({name})")]
                      for name in unique) == [["user_id", "event_id"],
                                              ["user_id", "item_id", "once_per_poll"]]
    finally:
        raw.close()


def test_votes_stored_before_the_once_per_poll_rule_are_kept_and_count_as_unmarked(
        tmp_path: Path) -> None:
    """A file of an older release may hold repeated votes (nothing stopped them): the
    migration keeps them all, and the rule starts from the upgrade on: the user's next
    vote on that poll is stored once, the one after is not."""
    path = tmp_path / "events.db"
    write_old_event_file(path, 2)
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("INSERT INTO events (event_id, kind, user_id, item_id, event_type, timestamp)"
                " VALUES ('again', 'interaction', 'u0002', 'p0002', 'HUNCH', 1700000003)")
    raw.close()
    with EventStore(path, EventRules(clock=lambda: 1_700_000_100)) as s:
        assert s.counts()["interactions"] == 3  # both old votes of u0002 on p0002
        assert s.append(hunch("u0002", "p0002", 1_700_000_050, event_id="new1")) is True
        assert s.append(hunch("u0002", "p0002", 1_700_000_051, event_id="new2")) is False


_OPEN_AND_COUNT = """
import sys
from recsys.events import EventStore
with EventStore(sys.argv[1]) as store:
    print(store.counts()["interactions"], store.last_seq())
"""


def test_workers_opening_an_old_file_together_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    write_old_event_file(path)
    children = [run_child(_OPEN_AND_COUNT, str(path), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [c.communicate(timeout=120) for c in children]
    assert [(c.returncode, err) for c, (_, err) in zip(children, outputs)] == [(0, "")] * 4
    assert {out for out, _ in outputs} == {f"2 {OLD_LAST_SEQ}\n"}
    with EventStore(path) as s:
        assert s.events_since(0) == OLD_EVENTS


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


def test_a_store_held_by_another_process_is_busy_not_unusable(tmp_path, monkeypatch) -> None:
    """Opening waits BUSY_TIMEOUT_MS for a writer (a large migration takes seconds);
    past it the message must not say to point the store at a new path, which would
    start an empty store beside a good one (review of migration 3)."""
    import sqlite3

    from recsys import events as events_module
    from recsys.events import EventStore, EventStoreError

    path = tmp_path / "events.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.executescript(SCHEMA_2 + "PRAGMA user_version = 2;")  # an older release's file
    holder.execute("BEGIN EXCLUSIVE")  # as a migrating process holds it
    monkeypatch.setattr(events_module, "BUSY_TIMEOUT_MS", 200)
    try:
        with pytest.raises(EventStoreError) as refused:
            EventStore(path)
        assert "is busy" in str(refused.value) and "the file is fine" in str(refused.value)
        assert "new path" not in str(refused.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    EventStore(path).close()  # once it is free, it opens


def test_derived_event_ids_stay_the_ones_stored_before() -> None:
    """A bulk row's id derives from its contents, and stores hold millions made so: a
    re-import adds nothing only while the derivation gives the same ids (these were
    made by the releases before the one-call hash)."""
    from recsys.events import Impression, Interaction

    assert Interaction("u1", "p1", "HUNCH", 1_700_000_000).event_id == \
        "4443c02963419eece15281267e98c1cd"
    assert Interaction("u1", "p1", "HUNCH", 1_700_000_000, 2.5, ("p1", "p9"),
                       "r1").event_id == "08023d566be0b57ccf23c6aeefa79881"
    assert Impression("u1", ("p1", "p2"), 1_700_000_000).event_id == \
        "a1f1f3db8e71640789c1fdad4b9bbd9e"


def test_a_file_before_schema_5_learns_its_event_only_polls(tmp_path: Path) -> None:
    """Migration 5 fills event_only_polls from the events already stored, so polls
    imported before the upgrade are protected too (helper-63's orphan claim)."""
    from recsys.errors import NotPollAuthor

    path = tmp_path / "events.sqlite3"
    with EventStore(path) as s:
        s.import_bulk([hunch("u1", "orphan-1", 1_700_000_000, event_id="v1"),
                       hunch("u1", "listed", 1_700_000_001, event_id="v2")],
                      items=[{"ITEM_ID": "listed", "CATEGORY": "X"}])
    raw = sqlite3.connect(path)  # as schema 4 left it
    raw.executescript("DROP TABLE event_only_polls; DROP INDEX recommendations_by_time; "
                      "PRAGMA user_version = 4;")
    raw.close()
    with EventStore(path) as s:
        with pytest.raises(NotPollAuthor):
            s.upsert_item({"ITEM_ID": "orphan-1", "CATEGORY": "X"}, acting_user="claimant")
        assert s.upsert_item({"ITEM_ID": "other", "CATEGORY": "X"}, acting_user="claimant")
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == events_module.SCHEMA_VERSION
        assert raw.execute("SELECT item_id FROM event_only_polls").fetchall() == [("orphan-1",)]
    finally:
        raw.close()


def test_a_file_before_schema_6_learns_deleted_polls(tmp_path: Path) -> None:
    """Migration 6 adds the tombstones: a file of the release before opens, keeps its
    polls, and its polls can be deleted for good."""
    from recsys.admission import DeletedPolls

    path = tmp_path / "events.sqlite3"
    with EventStore(path) as s:
        s.upsert_items([{"ITEM_ID": "p1", "CATEGORY": "X", "AUTHOR_ID": "ann"}])
    raw = sqlite3.connect(path)  # as schema 5 left it
    raw.executescript("DROP TABLE deleted_polls; PRAGMA user_version = 5;")
    raw.close()
    with EventStore(path) as s:
        assert s.get_item("p1")["AUTHOR_ID"] == "ann"
        assert s.delete_item("p1", acting_user="ann").author_id == "ann"
        with pytest.raises(DeletedPolls):
            s.upsert_item({"ITEM_ID": "p1", "CATEGORY": "X"}, acting_user="ann")
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 6
        assert raw.execute("SELECT item_id, author_id FROM deleted_polls").fetchall() == [
            ("p1", "ann")]
    finally:
        raw.close()
