"""Events the engine learns from: interactions and impressions, and their durable store.

The dataclasses (:class:`Interaction`, :class:`Impression`) are what every part of the
engine passes around. :class:`EventStore` keeps them, the catalog (items and users) and
the record of what each recommendation showed, in one embedded SQLite file.

Why SQLite, and why these settings:

* WAL mode with ``synchronous=FULL``: a write that ``append`` has returned from is in the
  fsynced log, so it survives ``kill -9`` and power loss, while readers never block the
  writer.
* ``BEGIN IMMEDIATE`` plus a busy timeout: several processes (uvicorn workers) append to
  the same file; SQLite serialises their write transactions, so none is lost and the
  file is never corrupted.
* A sequence number (``seq``, an AUTOINCREMENT rowid) on every stored event. Write
  transactions are serialised, so numbers are handed out in commit order and never
  reused: a process that has seen everything up to ``seq`` N can follow new events with
  :meth:`EventStore.events_since` and never miss one committed later.
  Numbers may skip (a duplicate that was ignored still used one up).
* Event ids are unique per user; a later duplicate from the same user is ignored, as
  Personalize's PutEvents does (its events are sent per user). Ids are client-chosen, so
  one user's id must never suppress, or reveal, another user's event.

Nothing here is hand-made that SQLite already does: uniqueness, transactions, JSON
(catalog records are JSON merged with ``json_patch``; impression counts are one
``json_each`` query).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from hunchio.values import MAX_TIMESTAMP, MIN_TIMESTAMP
from recsys.admission import (
    DeletedPolls,
    EventRules,
    UnknownPolls,
    check_event_type,
    check_event_value,
    check_id as _check_id,
    check_text,
    check_timestamp as _check_timestamp,
)
from recsys.errors import HunchError, InvalidEvent, NotPollAuthor
from recsys.event_head import EventHead
from recsys.schemas import MAX_IMPRESSION_LENGTH
from recsys.sqlite_wal import enable_wal
from recsys.store_db import StoreUnavailable


def derive_event_id(*parts: object) -> str:
    """A deterministic id for an event that came without one (bulk CSV rows)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x1f")
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Interaction:
    """A user did something with a poll (HUNCH = voted, COMMENT, ...).

    ``impression`` lists the polls that were visible when it happened (explicit
    impressions); ``recommendation_id`` names the response it came from (implicit ones).
    """

    user_id: str
    item_id: str
    event_type: str
    timestamp: int
    event_value: float | None = None
    impression: tuple[str, ...] = ()
    recommendation_id: str | None = None
    event_id: str = ""

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(
                self,
                "event_id",
                derive_event_id(
                    "i", self.user_id, self.item_id, self.event_type, self.timestamp,
                    self.event_value, self.impression, self.recommendation_id,
                ),
            )


@dataclass(frozen=True, slots=True)
class Impression:
    """Polls a user saw without acting on them (an impression-only event)."""

    user_id: str
    item_ids: tuple[str, ...]
    timestamp: int
    recommendation_id: str | None = None
    event_id: str = ""

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(
                self,
                "event_id",
                derive_event_id("m", self.user_id, self.item_ids, self.timestamp,
                                self.recommendation_id),
            )


# --------------------------------------------------------------------------- the store

SCHEMA_VERSION = 6  # PRAGMA user_version of files this code writes; bump on migrations
# Write transactions last milliseconds; a worker that waits this long for the write lock
# is facing a stuck process, and an error it can report beats hanging a request forever.
BUSY_TIMEOUT_MS = 30_000
# Rows fetched per query by the iterators: large enough that paging costs nothing, small
# enough that no read snapshot is held while a caller processes rows (a long-lived
# reader stops WAL checkpoints and lets the -wal file grow).
PAGE_SIZE = 5_000
# Page cache while a bulk import runs (KiB; SQLite's default is 2 MiB): the unique
# (user, event id) index of a million events is ~50 MB or more, and random inserts into
# it thrash a small cache. Measured (event-id index then): 1M interactions 13.4 s ->
# 11.5 s. Restored after the import.
BULK_IMPORT_CACHE_KIB = 65_536
DEFAULT_EVENTS_SINCE_LIMIT = 10_000  # one poll of a follower; it asks again for more
DEFAULT_LATEST_PER_TYPE = 100  # Personalize's Interactions filters look this far back
# LatestInteractionsCache: users kept (a 100-per-type history is a few KiB; 10k users of
# one worker stay in tens of MB) and how long a user's record may be served stale
# (records change in batch jobs such as clustering, not per request).
LATEST_CACHE_MAX_USERS = 10_000
LATEST_CACHE_USER_TTL_SECONDS = 60.0

ImportMode = Literal["incremental", "full"]
_T = TypeVar("_T")
_E = TypeVar("_E", Interaction, Impression)
_INTERACTION = "interaction"
_IMPRESSION = "impression"

# Version 1; _MIGRATIONS brings it up to date (3 rebuilt ``events``).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    -- AUTOINCREMENT: numbers are never reused, even after a full import deletes rows,
    -- so a follower's last seen seq stays meaningful.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('interaction', 'impression')),
    user_id TEXT NOT NULL,
    item_id TEXT,
    -- stored as given, compared case-insensitively (Personalize's event types are)
    event_type TEXT COLLATE NOCASE,
    event_value REAL,
    timestamp INTEGER NOT NULL,
    impression TEXT,  -- JSON array of item ids, NULL when there is no explicit list
    recommendation_id TEXT
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (kind, timestamp);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, timestamp);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    fields TEXT NOT NULL  -- JSON object of the metadata, without ITEM_ID
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    fields TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recommendations (
    recommendation_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    item_ids TEXT NOT NULL,  -- JSON array, in the order the response listed them
    timestamp INTEGER NOT NULL
) WITHOUT ROWID;
"""

# Schema changes after version 1, applied in order to older files (and to new ones after
# _SCHEMA). 2: every catalog write stamps the poll with the next catalog sequence number
# (a counter that survives full imports), so a worker follows edits, not only new polls.
_MIGRATIONS = {
    2: """
    ALTER TABLE items ADD COLUMN updated_seq INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS items_by_update ON items (updated_seq);
    CREATE TABLE IF NOT EXISTS catalog_seq (
        only INTEGER PRIMARY KEY CHECK (only = 0),
        value INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO catalog_seq (only, value) VALUES (0, 0);
    """,
    # 3: event ids unique per user, not globally (one user's id silently dropped another
    # user's event). The old UNIQUE is a column constraint, whose index SQLite cannot
    # drop, so the table is rebuilt (SQLite's documented way): copy, drop, rename, all in
    # the migration's one transaction. The new key is an index built after the copy: a
    # sorted build (1M events: ~6 s, while other processes wait up to BUSY_TIMEOUT_MS),
    # and one a later migration can drop. Rows keep their seq, and the AUTOINCREMENT
    # counter moves with the table (a rename carries its sqlite_sequence row), so no
    # number a follower has seen is handed out again.
    3: """
    CREATE TABLE events_v3 (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('interaction', 'impression')),
        user_id TEXT NOT NULL,
        item_id TEXT,
        event_type TEXT COLLATE NOCASE,
        event_value REAL,
        timestamp INTEGER NOT NULL,
        impression TEXT,
        recommendation_id TEXT
    );
    INSERT INTO events_v3 (seq, event_id, kind, user_id, item_id, event_type, event_value,
        timestamp, impression, recommendation_id)
    SELECT seq, event_id, kind, user_id, item_id, event_type, event_value, timestamp,
        impression, recommendation_id FROM events ORDER BY seq;
    DELETE FROM sqlite_sequence WHERE name = 'events_v3';
    UPDATE sqlite_sequence SET name = 'events_v3' WHERE name = 'events';
    DROP TABLE events;
    ALTER TABLE events_v3 RENAME TO events;
    CREATE UNIQUE INDEX events_by_user_event ON events (user_id, event_id);
    CREATE INDEX events_by_time ON events (kind, timestamp);
    CREATE INDEX events_by_user ON events (user_id, timestamp);
    """,
    # 4: a user's vote counts once per poll (admission.DEFAULT_ONCE_PER_POLL_TYPES). A
    # writer with rules sets once_per_poll to the canonical type of such events (" hunch"
    # is HUNCH), NULL otherwise; the partial unique index then keeps the first of a (user,
    # poll, type) and INSERT OR IGNORE skips the rest, as it skips a retried event id.
    # Rows stored before stay NULL (which types count once is a setting; nothing stored
    # is rewritten): a vote from before the upgrade does not stop the next one. Adding a
    # column and an index leaves every row as it was.
    4: """
    ALTER TABLE events ADD COLUMN once_per_poll TEXT;
    CREATE UNIQUE INDEX events_once_per_poll ON events (user_id, item_id, once_per_poll)
        WHERE once_per_poll IS NOT NULL;
    """,
    # 5: (a) recommendations expire (RecommendationLog's retention): an index to find the
    # old ones. (b) Polls that imported interactions name without a catalog record: such
    # a poll already exists (it has votes, is served), so only an internal tool may write
    # its record; before, whoever named it first in upsertPoll became its author and
    # wrote its text over its votes (helper-63). Filled from the events already stored.
    5: """
    CREATE INDEX IF NOT EXISTS recommendations_by_time ON recommendations (timestamp);
    CREATE TABLE IF NOT EXISTS event_only_polls (item_id TEXT PRIMARY KEY) WITHOUT ROWID;
    INSERT OR IGNORE INTO event_only_polls
        SELECT DISTINCT item_id FROM events WHERE kind = 'interaction' AND item_id IS NOT NULL
        AND item_id NOT IN (SELECT item_id FROM items);
    INSERT OR IGNORE INTO event_only_polls
        SELECT DISTINCT j.value FROM events AS e, json_each(e.impression) AS j
        WHERE e.impression IS NOT NULL AND j.value NOT IN (SELECT item_id FROM items);
    """,
    # 6: deleted polls (deletePoll: by their author or by moderation). The catalog row
    # goes, with its text (privacy); the tombstone keeps the id, the author, who deleted
    # it and when, so the id is never written again (upsertPoll, imports), events on it
    # are refused, and every worker learns of it by the catalog sequence number it was
    # stamped with (deletions_since), as it learns of a new poll. Events stay (history).
    6: """
    CREATE TABLE IF NOT EXISTS deleted_polls (
        item_id TEXT PRIMARY KEY,
        author_id TEXT,
        deleted_by TEXT NOT NULL,
        deleted_at INTEGER NOT NULL,
        deleted_seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS deleted_polls_by_seq ON deleted_polls (deleted_seq);
    """,
}
# After an import: the polls its events name that have no record (migration 5): an
# interaction's poll, and every poll of an impression list (shown in someone's feed).
_NOTE_EVENT_ONLY_POLLS = (
    "INSERT OR IGNORE INTO event_only_polls SELECT DISTINCT e.item_id FROM events AS e "
    "WHERE e.seq > ?1 AND e.kind = 'interaction' AND e.item_id IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM items AS i WHERE i.item_id = e.item_id) "
    "UNION SELECT j.value FROM events AS e, json_each(e.impression) AS j "
    "WHERE e.seq > ?1 AND e.impression IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM items AS i WHERE i.item_id = j.value)"
)

_EVENT_COLUMNS = (
    "seq, kind, event_id, user_id, item_id, event_type, event_value, timestamp, "
    "impression, recommendation_id"
)
# Recommendations deleted a transaction by forget_recommendations_before.
FORGET_BATCH_ROWS = 5_000
# What append()'s two unique indexes compare; the event's own id first.
_COUNTED_EVENT_ID = (
    "SELECT event_id FROM events WHERE user_id = ?1 AND (event_id = ?2 OR "
    "(item_id = ?3 AND once_per_poll = ?4)) ORDER BY event_id <> ?2 LIMIT 1")

# The row of _event_row, then once_per_poll (see migration 4): a row that breaks either
# unique index (a retried event id, a second vote) is skipped.
_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (event_id, kind, user_id, item_id, event_type, "
    "event_value, timestamp, impression, recommendation_id, once_per_poll) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# JSON merge patch (RFC 7396): given fields replace stored ones, a null removes one; a
# new record is patched onto {} so it never stores nulls either.
# A deleted poll's id is skipped (its tombstone stays): no write brings it back.
_UPSERT_ITEM = (
    "INSERT INTO items (item_id, fields, updated_seq) SELECT ?1, json_patch('{}', ?2), ?3 "
    "WHERE NOT EXISTS (SELECT 1 FROM deleted_polls WHERE item_id = ?1) "
    "ON CONFLICT (item_id) DO UPDATE SET fields = json_patch(fields, ?2), updated_seq = ?3"
)
# A tombstone from elsewhere (an import): new, or replacing a later deletion of the same
# id, so the first deletion's author, deleter and time are the ones kept. The sequence
# number stays a tombstone's first: workers already dropped the poll by it.
_IMPORT_DELETION = (
    "INSERT INTO deleted_polls (item_id, author_id, deleted_by, deleted_at, deleted_seq) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (item_id) DO UPDATE SET "
    "author_id = excluded.author_id, deleted_by = excluded.deleted_by, "
    "deleted_at = excluded.deleted_at WHERE excluded.deleted_at < deleted_polls.deleted_at"
)
_UPSERT_USER = (
    "INSERT INTO users (user_id, fields) VALUES (?1, json_patch('{}', ?2)) "
    "ON CONFLICT (user_id) DO UPDATE SET fields = json_patch(fields, ?2)"
)


class EventStoreError(HunchError):
    """The event store file cannot be used as asked (closed, newer schema, not SQLite)."""


class EventStoreBusy(EventStoreError, StoreUnavailable):
    """Another process held the file's write lock past the busy timeout (an import, a
    paused process), or too many writes already wait for it: nothing was written, and a
    retry in a moment may be. Answered as STORE_UNAVAILABLE (retryable) to clients; it
    was an INTERNAL_SERVER_ERROR after 30 s of waiting."""

    retryable = True


@dataclass(frozen=True, slots=True)
class PollDeletion:
    """A deleted poll's tombstone: its id, author (None for a poll imported events
    named without a record), who deleted it (the author or an internal tool's user) and
    when (epoch seconds). ``already``: it was deleted before this call."""

    item_id: str
    author_id: str | None
    deleted_by: str
    deleted_at: int
    already: bool = False


@dataclass(slots=True)
class LeftOut:
    """What :func:`without_polls` left out of events for naming ``polls`` (counted as
    they stream: read once the events are consumed)."""

    interactions: int = 0  # interactions on one of the polls
    impressions: int = 0  # impression-only events that showed nothing else
    lists: int = 0  # events kept, the polls taken out of their impression list

    def __bool__(self) -> bool:
        return bool(self.interactions or self.impressions or self.lists)


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """What :meth:`EventStore.import_bulk` wrote: new events, upserted catalog records."""

    interactions: int
    impressions: int
    items: int
    users: int
    deletions: int = 0  # tombstones new to the store (import_deletions)
    # Imported events naming a deleted poll (deleted before, or by this import's
    # tombstones): skipped, as an append of them is refused (see without_polls).
    deleted: LeftOut = field(default_factory=LeftOut)


class EventStore:
    """Durable, append-only store of interactions and impressions, plus the catalog.

    One object may be shared by threads (a lock guards its connection); several
    processes may open the same file at once. Iterators read in pages and do not hold a
    snapshot, so events appended while one runs may or may not appear in it.

    Every write is checked for shape (:mod:`recsys.admission`); with ``rules``, appended
    events must also pass its live rules and imported ones its history rules.
    """

    def __init__(self, path: Path | str, rules: EventRules | None = None) -> None:
        self.path = Path(path)
        self.rules = rules
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            # isolation_level=None: this class issues BEGIN IMMEDIATE / COMMIT itself.
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise EventStoreError(f"cannot open the event store {self.path}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn
        try:
            self._setup(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._conn = None
            if isinstance(exc, sqlite3.OperationalError) and (
                    "locked" in str(exc) or "busy" in str(exc)):
                # Not a bad file: another process holds it, e.g. while it migrates a
                # large store (1M events: ~6 s). "Point the store at a new path" would
                # have an operator start an empty one.
                raise EventStoreError(
                    f"{self.path} is busy ({exc}): another process is writing or upgrading "
                    "it; start this one again once that is done (the file is fine)"
                ) from exc
            raise EventStoreError(
                f"{self.path} is not a usable event store ({exc}); point the store at a "
                "new path or at a file this engine created"
            ) from exc
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _setup(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = enable_wal(conn, BUSY_TIMEOUT_MS / 1000)
        if str(mode).lower() != "wal":
            raise EventStoreError(
                f"{self.path}: SQLite refused WAL mode (got {mode!r}); the store needs a "
                "local file system that supports shared memory, not a network share"
            )
        # FULL (not NORMAL): in WAL mode NORMAL may lose the last commits on power loss.
        conn.execute("PRAGMA synchronous = FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise EventStoreError(
                f"{self.path} was written by a newer version of the engine (schema "
                f"{version}, this code knows {SCHEMA_VERSION}); upgrade hunch-feed"
            )
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Again under the write lock: another process may have migrated meanwhile
                # (ALTER TABLE, unlike CREATE ... IF NOT EXISTS, cannot run twice).
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[target].split(";"):
                        if statement.strip():
                            conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise EventStoreError(f"the event store {self.path} is closed; open a new EventStore")
        return self._conn

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work(conn)`` in one write transaction: all of it is committed, or none."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                raise EventStoreBusy(
                    f"could not write to {self.path}: {exc} (another process held the "
                    f"write lock for over {BUSY_TIMEOUT_MS / 1000:g} s; look for a stuck "
                    "importer or a process paused in a debugger)"
                ) from exc
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection().execute(sql, tuple(params)).fetchall()

    def _events_in_time_order(
        self, where: str, params: tuple[Any, ...]
    ) -> Iterator[tuple[Any, ...]]:
        """Rows matching ``where`` by (timestamp, seq), fetched a page at a time."""
        after: tuple[int, int] | None = None
        while True:
            if after is None:
                page_where, page_params = where, params
            else:
                page_where = f"{where} AND (timestamp, seq) > (?, ?)"
                page_params = params + after
            rows = self._read(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE {page_where} "
                f"ORDER BY timestamp, seq LIMIT {PAGE_SIZE}",
                page_params,
            )
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            after = (rows[-1][7], rows[-1][0])

    def check_writable(self) -> None:
        """Raise :class:`EventStoreError` unless a write could be taken now (readiness
        probes): the store is open, the file is writable and the write lock obtainable."""
        try:
            self._write(lambda conn: None)
        except sqlite3.Error as exc:
            raise EventStoreError(
                f"the event store {self.path} cannot take writes: {exc}; check the file's "
                "permissions and free disk space"
            ) from exc

    def close(self) -> None:
        """Close the file; later calls raise :class:`EventStoreError`. Safe to repeat."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventStore({str(self.path)!r})"

    # ------------------------------------------------------------------ events

    def check_live(self, event: Interaction | Impression) -> None:
        """Raise :class:`InvalidEvent` unless :meth:`append` would take ``event`` now."""
        _event_row(event)
        if self.rules is not None:
            self.rules.check_live(event)

    def append(self, event: Interaction | Impression) -> bool:
        """Store one event durably; True when new, False when it was already counted:
        its user already sent an event with its id, or (with rules) already has an
        event of this once-per-poll type on this poll (a second vote)."""
        row = (*_event_row(event), once_per_poll(event, self.rules))
        if self.rules is not None:
            self.rules.check_live(event)
        polls = named_polls([event])

        def work(conn: sqlite3.Connection) -> int:
            _refuse_deleted(conn, polls)  # in the write: a racing deletion is seen
            return conn.execute(_INSERT_EVENT, row).rowcount

        return bool(self._write(work))

    def counted_event_id(self, event: Interaction) -> str | None:
        """The id of the stored event that made :meth:`append` of ``event`` a repeat:
        the one with its user and id, else (with rules) its user's event of its
        once-per-poll type on its poll; None when neither is stored."""
        rows = self._read(_COUNTED_EVENT_ID, (event.user_id, event.event_id, event.item_id,
                                              once_per_poll(event, self.rules)))
        return rows[0][0] if rows else None

    def append_many(self, events: Iterable[Interaction | Impression]) -> int:
        """Store events in one transaction (all or none); returns how many were new
        (see :meth:`append`: a second vote in the same batch counts once too)."""
        events = list(events)
        # validate all before writing any
        rows = [(*_event_row(e), once_per_poll(e, self.rules)) for e in events]
        if self.rules is not None:
            for event in events:
                self.rules.check_live(event)
        if not rows:
            return 0
        polls = named_polls(events)

        def work(conn: sqlite3.Connection) -> int:
            _refuse_deleted(conn, polls)
            return conn.executemany(_INSERT_EVENT, rows).rowcount

        return self._write(work)

    def interactions(self) -> Iterator[Interaction]:
        """Every interaction, oldest first (ties in the order they were stored)."""
        for row in self._events_in_time_order("kind = ?", (_INTERACTION,)):
            yield _interaction_from(row)

    def impressions(self) -> Iterator[Impression]:
        """Every impression-only event, oldest first (ties in the order stored)."""
        for row in self._events_in_time_order("kind = ?", (_IMPRESSION,)):
            yield _impression_from(row)

    def events_between(
        self, start_ts: int, end_ts: int, event_types: Iterable[str] | None = None
    ) -> Iterator[Interaction]:
        """Interactions with ``start_ts <= timestamp < end_ts``, oldest first."""
        where = "kind = ? AND timestamp >= ? AND timestamp < ?"
        params: tuple[Any, ...] = (_INTERACTION, start_ts, end_ts)
        if event_types is not None:
            types = tuple(event_types)
            if not types:
                return
            where += f" AND event_type IN ({', '.join('?' * len(types))})"
            params += types
        for row in self._events_in_time_order(where, params):
            yield _interaction_from(row)

    def latest_events(
        self, user_id: str, per_type: int = DEFAULT_LATEST_PER_TYPE,
        event_types: Iterable[str] | None = None,
    ) -> dict[str, list[Interaction]]:
        """A user's newest ``per_type`` interactions of each event type, newest first.

        Event types match case-insensitively. Keys are spelled as in ``event_types`` when
        given, else as the newest stored event of that type spells them.
        """
        where = "kind = ? AND user_id = ?"
        params: tuple[Any, ...] = (_INTERACTION, user_id)
        asked: dict[str, str] = {}
        if event_types is not None:
            types = tuple(event_types)
            if not types:
                return {}
            asked = {t.lower(): t for t in types}
            where += f" AND event_type IN ({', '.join('?' * len(types))})"
            params += types
        rows = self._read(
            f"SELECT {_EVENT_COLUMNS} FROM ("
            f"  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_type "
            f"    ORDER BY timestamp DESC, seq DESC) AS rank"
            f"  FROM events WHERE {where}"
            f") WHERE rank <= ? ORDER BY event_type, rank",
            params + (per_type,),
        )
        out: dict[str, list[Interaction]] = {}
        keys: dict[str, str] = {}  # lower-cased type -> key in ``out``
        for row in rows:
            event = _interaction_from(row)
            folded = event.event_type.lower()
            key = keys.setdefault(folded, asked.get(folded, event.event_type))
            out.setdefault(key, []).append(event)
        return out

    def events_since(
        self, seq: int, limit: int = DEFAULT_EVENTS_SINCE_LIMIT
    ) -> list[tuple[int, Interaction | Impression]]:
        """Events stored after sequence number ``seq``, in the order they were stored.

        Pass the last number you received to get the next batch; an empty list means
        you are up to date.
        """
        rows = self._read(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [(row[0], _event_from(row)) for row in rows]

    def last_seq(self) -> int:
        """The highest sequence number given out so far (0 for a new store); pass it to
        :meth:`events_since` later to get only what arrived after now."""
        rows = self._read("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        return int(rows[0][0]) if rows else 0

    def counts(self) -> dict[str, int]:
        """How many interactions, impression-only events, items and users are stored."""
        rows = self._read(
            "SELECT (SELECT COUNT(*) FROM events WHERE kind = 'interaction'),"
            " (SELECT COUNT(*) FROM events WHERE kind = 'impression'),"
            " (SELECT COUNT(*) FROM items), (SELECT COUNT(*) FROM users)"
        )
        interactions, impressions, items, users = rows[0]
        return {"interactions": interactions, "impressions": impressions,
                "items": items, "users": users}

    def count_events(
        self, user_id: str | None = None, item_id: str | None = None,
        event_type: str | None = None, since: int | None = None,
    ) -> int:
        """How many interactions match every given condition (``timestamp >= since``)."""
        where, params = ["kind = ?"], [_INTERACTION]
        for column, value, op in (
            ("user_id", user_id, "="), ("item_id", item_id, "="),
            ("event_type", event_type, "="), ("timestamp", since, ">="),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        return self._read(f"SELECT COUNT(*) FROM events WHERE {' AND '.join(where)}", params)[0][0]

    def count_items(self) -> int:
        """How many polls the catalog holds (cheap: the events table is not counted)."""
        return int(self._read("SELECT COUNT(*) FROM items")[0][0])

    def seq_before(self, timestamp: int) -> int:
        """A sequence number below every event newer than ``timestamp``: tailing
        :meth:`events_since` from it skips the bulk of events already trained on."""
        rows = self._read(
            "SELECT MIN(seq) FROM events WHERE kind IN (?, ?) AND timestamp > ?",
            (_INTERACTION, _IMPRESSION, timestamp))
        first = rows[0][0] if rows else None
        return self.last_seq() if first is None else max(0, int(first) - 1)

    def latest_item_ids(self, user_id: str, per_type: int = DEFAULT_LATEST_PER_TYPE
                        ) -> dict[str, list[str]]:
        """The polls of a user's newest ``per_type`` interactions of each event type,
        oldest first (what Personalize's interactions filters look at); event types
        lower-cased. Cheaper than :meth:`latest_events`: no event is decoded."""
        rows = self._read(
            "SELECT event_type, item_id FROM ("
            "  SELECT event_type, item_id, timestamp, seq, ROW_NUMBER() OVER ("
            "    PARTITION BY lower(event_type) ORDER BY timestamp DESC, seq DESC) AS rank"
            "  FROM events WHERE kind = ? AND user_id = ?"
            ") WHERE rank <= ? ORDER BY timestamp, seq",
            (_INTERACTION, user_id, per_type),
        )
        out: dict[str, list[str]] = {}
        for event_type, item_id in rows:
            out.setdefault(event_type.lower(), []).append(item_id)
        return out

    def user_context(self, user_id: str, per_type: int = DEFAULT_LATEST_PER_TYPE
                     ) -> tuple[dict[str, list[str]], dict[str, Any] | None]:
        """``(latest_item_ids(user_id, per_type), get_user(user_id))`` (PostgreSQL reads
        both in one round trip; here two local reads cost about as much as one)."""
        return self.latest_item_ids(user_id, per_type), self.get_user(user_id)

    def interacting_users_since(
        self, seq: int, limit: int = DEFAULT_EVENTS_SINCE_LIMIT
    ) -> tuple[int, set[str], bool]:
        """Who interacted after sequence number ``seq``: ``(last seq read, user ids,
        complete)``; ``complete`` is False when ``limit`` rows were read and more may
        follow (ask again from the returned seq). Nothing is decoded: cheap enough to
        run before every feed request to keep per-user caches honest."""
        rows = self._read(
            "SELECT seq, kind, user_id FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        if not rows:
            return seq, set(), True
        users = {user for _, kind, user in rows if kind == _INTERACTION}
        return rows[-1][0], users, len(rows) < limit

    # ------------------------------------------------------------------ impressions

    def record_recommendations(
        self, rows: Iterable[tuple[str, str, Iterable[str], int]]
    ) -> int:
        """:meth:`record_recommendation` for many responses in one transaction."""
        checked = []
        for recommendation_id, user_id, item_ids, timestamp in rows:
            items = tuple(item_ids)
            _check_id("recommendation_id", recommendation_id)
            _check_id("user_id", user_id)
            for item in items:
                _check_id("item id in the recommendation", item)
            _check_timestamp(timestamp)
            checked.append((recommendation_id, user_id, json.dumps(items), timestamp))
        if not checked:
            return 0
        return self._write(lambda conn: conn.executemany(
            "INSERT OR IGNORE INTO recommendations (recommendation_id, user_id, item_ids, "
            "timestamp) VALUES (?, ?, ?, ?)", checked,
        ).rowcount)

    def forget_recommendations_before(self, timestamp: int,
                                      batch: int = FORGET_BATCH_ROWS) -> int:
        """Delete up to ``batch`` recorded recommendations older than ``timestamp`` in
        one transaction (writers wait at most one batch); returns how many."""
        return self._write(lambda conn: conn.execute(
            "DELETE FROM recommendations WHERE recommendation_id IN (SELECT "
            "recommendation_id FROM recommendations WHERE timestamp < ? LIMIT ?)",
            (timestamp, batch)).rowcount)

    def record_recommendation(
        self, recommendation_id: str, user_id: str, item_ids: Iterable[str], timestamp: int
    ) -> bool:
        """Durably remember what a response showed, so events that name its
        ``recommendation_id`` count as implicit impressions. True when new; a repeated
        id keeps the first record."""
        return bool(self.record_recommendations([(recommendation_id, user_id, item_ids,
                                                   timestamp)]))

    def recommendation_items(self, recommendation_id: str) -> tuple[str, ...] | None:
        """The polls a recorded recommendation showed, in order; None when unknown."""
        rows = self._read(
            "SELECT item_ids FROM recommendations WHERE recommendation_id = ?",
            (recommendation_id,),
        )
        return tuple(json.loads(rows[0][0])) if rows else None

    def impression_counts(self, since: int | None = None) -> dict[str, int]:
        """How often each poll appeared in impressions (events with ``timestamp >= since``).

        Counts explicit lists on interactions, impression-only events, and for an event
        that has a recommendation id but no explicit list, the recommendation's polls
        (the explicit list wins when both are present, as in Personalize).
        """
        where, params = ("WHERE e.timestamp >= ?", (since,)) if since is not None else ("", ())
        rows = self._read(
            "SELECT shown.value, COUNT(*) FROM events AS e, json_each(COALESCE(e.impression,"
            " (SELECT r.item_ids FROM recommendations AS r"
            "  WHERE r.recommendation_id = e.recommendation_id))) AS shown "
            f"{where} GROUP BY shown.value",
            params,
        )
        return dict(rows)

    # ------------------------------------------------------------------ catalog

    def upsert_items(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add or update polls (one transaction). A record's fields are merged into the
        stored ones (JSON merge patch): given fields replace, others stay, a field set
        to None is removed. Returns how many records were written."""
        rows = [_catalog_row("ITEM_ID", r, n) for n, r in enumerate(records, 1)]
        if not rows:
            return 0
        return self._write(lambda conn: _upsert_stamped(conn, rows))

    def upsert_item(self, record: Mapping[str, Any], *, acting_user: str,
                    admin: bool = False) -> dict[str, Any]:
        """Add or change one poll on behalf of ``acting_user`` and return the stored
        record. Ownership is checked in the write's own transaction, so no other write
        can slip between the check and the change: a new poll gets the caller as
        AUTHOR_ID when it names none (and now as CREATION_TIMESTAMP), and must name the caller otherwise; an existing
        poll may be changed only by its stored author (and not given away). ``admin``
        (internal tools) may do both for any author. Raises :class:`NotPollAuthor`."""
        item_id, _ = _catalog_row("ITEM_ID", record, 1)  # validates before any lock

        def work(conn: sqlite3.Connection) -> dict[str, Any]:
            _refuse_deleted(conn, [item_id], _DELETED_STAYS)
            found = conn.execute(
                "SELECT json_extract(fields, '$.AUTHOR_ID'), "
                "json_extract(fields, '$.CREATION_TIMESTAMP') FROM items WHERE item_id = ?",
                (item_id,)).fetchone()
            named = found is None and conn.execute(
                "SELECT 1 FROM event_only_polls WHERE item_id = ?", (item_id,)).fetchone()
            fields = owned_poll_fields(item_id, record, found, acting_user, admin,
                                       has_events=bool(named))
            _upsert_stamped(conn, [_catalog_row("ITEM_ID", fields, 1)])
            row = conn.execute("SELECT item_id, fields FROM items WHERE item_id = ?",
                               (item_id,)).fetchone()
            return _record_from("ITEM_ID", row)

        return self._write(work)

    def delete_item(self, item_id: str, *, acting_user: str, admin: bool = False,
                    now: int | None = None) -> PollDeletion:
        """Delete a poll on behalf of ``acting_user``: its catalog row (and text) goes,
        a tombstone stays (see migration 6); its events stay. Only its stored author or
        an internal tool (``admin``) may, checked in the write's transaction. Deleting a
        deleted poll answers its tombstone (``already``). Raises :class:`NotPollAuthor`,
        or :class:`UnknownPolls` when no such poll exists."""
        _check_id("poll id", item_id)
        at = int(time.time()) if now is None else now

        def work(conn: sqlite3.Connection) -> PollDeletion:
            gone = conn.execute(
                "SELECT author_id, deleted_by, deleted_at FROM deleted_polls WHERE item_id = ?",
                (item_id,)).fetchone()
            if gone is not None:
                check_may_delete(item_id, gone[0], acting_user, admin)
                return PollDeletion(item_id, *gone, already=True)
            author = _stored_author(conn.execute(
                "SELECT json_extract(fields, '$.AUTHOR_ID') FROM items WHERE item_id = ?",
                (item_id,)).fetchone(), conn.execute(
                "SELECT 1 FROM event_only_polls WHERE item_id = ?", (item_id,)).fetchone(),
                item_id)
            check_may_delete(item_id, author, acting_user, admin)
            seq = conn.execute("SELECT value FROM catalog_seq").fetchone()[0] + 1
            conn.execute("DELETE FROM items WHERE item_id = ?", (item_id,))
            conn.execute("INSERT INTO deleted_polls (item_id, author_id, deleted_by, "
                         "deleted_at, deleted_seq) VALUES (?, ?, ?, ?, ?)",
                         (item_id, author, acting_user, at, seq))
            conn.execute("UPDATE catalog_seq SET value = ?", (seq,))
            return PollDeletion(item_id, author, acting_user, at)

        return self._write(work)

    def deleted_item_ids(self, item_ids: Iterable[str]) -> list[str]:
        """The ids among ``item_ids`` that name deleted polls, in the order given."""
        ids = list(dict.fromkeys(item_ids))
        with self._lock:
            gone = _deleted_among(self._connection(), ids)
        return [i for i in ids if i in gone]

    def deletions_since(self, seq: int, limit: int = PAGE_SIZE,
                        ) -> tuple[int, dict[str, int]]:
        """Polls deleted after catalog sequence number ``seq``, by whichever process:
        ``(newest seq read, {poll id: deleted at})``; fewer than ``limit`` means up to
        date (as :meth:`items_updated_since`, which no longer lists them)."""
        rows = self._read(
            "SELECT item_id, deleted_at, deleted_seq FROM deleted_polls WHERE deleted_seq > ? "
            "ORDER BY deleted_seq LIMIT ?", (seq, limit))
        if not rows:
            return seq, {}
        return rows[-1][2], {row[0]: row[1] for row in rows}

    def deletions(self) -> Iterator[PollDeletion]:
        """Every tombstone, in the order the polls were deleted, read in pages (an
        export streams them)."""
        after: tuple[int, str] = (-1, "")
        while True:
            rows = self._read(
                "SELECT item_id, author_id, deleted_by, deleted_at, deleted_seq "
                "FROM deleted_polls WHERE (deleted_seq, item_id) > (?, ?) "
                f"ORDER BY deleted_seq, item_id LIMIT {PAGE_SIZE}", after)
            yield from (PollDeletion(*row[:4]) for row in rows)
            if len(rows) < PAGE_SIZE:
                return
            after = (rows[-1][4], rows[-1][0])

    def import_deletions(self, deletions: Iterable[PollDeletion]) -> int:
        """Store tombstones another store kept (a restore, a move), in one transaction:
        each poll's catalog row goes, and its id is never written again, as after
        :meth:`delete_item`. Idempotent; where a tombstone exists, the earlier deletion
        is kept. Returns how many were new. Raises :class:`InvalidEvent` (nothing
        written) for a tombstone whose ids or time no store would take."""
        rows = [_deletion_row(d, self.rules) for d in deletions]  # before any lock
        return self._write(lambda conn: _store_deletions(conn, rows)) if rows else 0

    def upsert_users(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add or update users; merged like :meth:`upsert_items`."""
        rows = [_catalog_row("USER_ID", r, n) for n, r in enumerate(records, 1)]
        if not rows:
            return 0
        return self._write(lambda conn: conn.executemany(_UPSERT_USER, rows).rowcount)

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        """The poll's record (ITEM_ID plus metadata), or None when unknown."""
        rows = self._read("SELECT item_id, fields FROM items WHERE item_id = ?", (item_id,))
        return _record_from("ITEM_ID", rows[0]) if rows else None

    def stored_event_ids(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """The (user id, event id) pairs among ``pairs`` that the store holds (by the
        unique index, 250 pairs a query)."""
        pairs = list(dict.fromkeys(pairs))
        found: set[tuple[str, str]] = set()
        for start in range(0, len(pairs), 250):  # 2 variables a pair: SQLite's limit, with room
            chunk = pairs[start:start + 250]
            found.update(self._read(
                "SELECT e.user_id, e.event_id FROM (VALUES "
                + ", ".join(["(?, ?)"] * len(chunk))
                + ") AS v JOIN events AS e ON e.user_id = v.column1 AND e.event_id = v.column2",
                tuple(x for pair in chunk for x in pair)))
        return found

    def unknown_item_ids(self, item_ids: Iterable[str]) -> list[str]:
        """The ids among ``item_ids`` that the catalog does not hold, in the order given
        (one query, nothing decoded; ids must be valid, see :func:`admission.check_id`)."""
        ids = list(dict.fromkeys(item_ids))
        known: set[str] = set()
        for start in range(0, len(ids), 500):  # SQLite's variable limit, with room
            chunk = ids[start:start + 500]
            known.update(row[0] for row in self._read(
                f"SELECT item_id FROM items WHERE item_id IN ({', '.join('?' * len(chunk))})",
                tuple(chunk)))
        return [i for i in ids if i not in known]

    def get_items(self, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The records of these polls (unknown ids are left out), in one query."""
        ids = list(dict.fromkeys(item_ids))
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):  # SQLite's variable limit, with room
            chunk = ids[start:start + 500]
            rows = self._read(
                f"SELECT item_id, fields FROM items WHERE item_id IN ({', '.join('?' * len(chunk))})",
                tuple(chunk))
            for row in rows:
                out[row[0]] = _record_from("ITEM_ID", row)
        return out

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        """The user's record (USER_ID plus metadata), or None when unknown."""
        rows = self._read("SELECT user_id, fields FROM users WHERE user_id = ?", (user_id,))
        return _record_from("USER_ID", rows[0]) if rows else None

    def catalog_seq(self) -> int:
        """The newest catalog sequence number (0 for a new store): pass it to
        :meth:`items_updated_since` later to get only the polls written after now."""
        return int(self._read("SELECT value FROM catalog_seq")[0][0])

    def items_updated_since(self, seq: int, limit: int = PAGE_SIZE,
                            ) -> tuple[int, dict[str, dict[str, Any]]]:
        """Polls added or changed after catalog sequence number ``seq``, by whichever
        process: ``(newest seq read, records by ITEM_ID)``. Fewer than ``limit``
        records means up to date; otherwise ask again from the returned seq."""
        rows = self._read(
            "SELECT item_id, fields, updated_seq FROM items WHERE updated_seq > ? "
            "ORDER BY updated_seq LIMIT ?", (seq, limit))
        if not rows:
            return seq, {}
        return rows[-1][2], {row[0]: _record_from("ITEM_ID", row[:2]) for row in rows}

    def items(self) -> Iterator[dict[str, Any]]:
        """Every poll's record, by ITEM_ID."""
        return self._catalog("items", "item_id", "ITEM_ID")

    def users(self) -> Iterator[dict[str, Any]]:
        """Every user's record, by USER_ID."""
        return self._catalog("users", "user_id", "USER_ID")

    def _catalog(self, table: str, column: str, key: str) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            where, params = ("", ()) if after is None else (f"WHERE {column} > ?", (after,))
            rows = self._read(
                f"SELECT {column}, fields FROM {table} {where} ORDER BY {column} "
                f"LIMIT {PAGE_SIZE}", params,
            )
            for row in rows:
                yield _record_from(key, row)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]

    # ------------------------------------------------------------------ bulk import

    def import_bulk(
        self,
        interactions: Iterable[Interaction] = (),
        impressions: Iterable[Impression] = (),
        items: Iterable[Mapping[str, Any]] = (),
        users: Iterable[Mapping[str, Any]] = (),
        mode: ImportMode = "incremental",
        deletions: Iterable[PollDeletion] = (),
    ) -> ImportCounts:
        """Write datasets in ONE transaction: everything goes in, or (on any error,
        including one raised while iterating the inputs) nothing changes.

        ``full`` first deletes every stored event and the catalog (recorded
        recommendations stay: they describe responses already served); ``incremental``
        adds new events and merges catalog records. Sequence numbers keep growing in
        both modes. ``deletions`` are stored first (:meth:`import_deletions`), so the
        ``items`` of those polls are skipped as any deleted poll's are; tombstones
        outlive a full import.

        Events naming a deleted poll (deleted before, or by ``deletions``) are skipped,
        not refused: an interaction on one is left out, its id is taken out of
        impression lists, and an impression-only event that showed nothing else is
        left out (:func:`without_polls`, counted in :attr:`ImportCounts.deleted`).
        Read in the write transaction, so no deletion slips in between.
        """
        if mode not in ("incremental", "full"):
            raise EventStoreError(f"unknown import mode {mode!r}; use 'incremental' or 'full'")
        if self.rules is not None:
            interactions = _admitted(interactions, self.rules)
            impressions = _admitted(impressions, self.rules)

        def work(conn: sqlite3.Connection) -> ImportCounts:
            if mode == "full":
                for table in ("events", "items", "users", "event_only_polls"):
                    conn.execute(f"DELETE FROM {table}")
            new_deletions = _store_deletions(conn, [_deletion_row(d, self.rules)
                                                     for d in deletions])
            left_out = LeftOut()  # in the write lock: no deletion slips in meanwhile
            acted, shown = without_deleted(
                {row[0] for row in conn.execute("SELECT item_id FROM deleted_polls")},
                interactions, impressions, left_out)
            before = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            # Generators, not lists: a million rows never sit in memory twice.
            new_interactions = conn.executemany(
                _INSERT_EVENT, ((*_interaction_row(e), once_per_poll(e, self.rules))
                                for e in acted)
            ).rowcount
            new_impressions = conn.executemany(
                _INSERT_EVENT, ((*_impression_row(e), None) for e in shown)
            ).rowcount
            n_items = _upsert_stamped(
                conn, (_catalog_row("ITEM_ID", r, n) for n, r in enumerate(items, 1)))
            n_users = conn.executemany(
                _UPSERT_USER, (_catalog_row("USER_ID", r, n) for n, r in enumerate(users, 1))
            ).rowcount
            conn.execute(_NOTE_EVENT_ONLY_POLLS, (before,))
            return ImportCounts(
                max(new_interactions, 0), max(new_impressions, 0), max(n_items, 0),
                max(n_users, 0), new_deletions, left_out,
            )

        with self._lock:
            conn = self._connection()
            normal_cache = conn.execute("PRAGMA cache_size").fetchone()[0]
            conn.execute(f"PRAGMA cache_size = -{BULK_IMPORT_CACHE_KIB}")
            try:
                return self._write(work)
            finally:
                conn.execute(f"PRAGMA cache_size = {normal_cache}")


class LatestInteractionsCache:
    """Each user's latest interactions per event type, plus the user's record, kept
    between feed requests: what interactions filters and ``IF CurrentUser`` clauses read.

    Reading them costs a windowed query per request (0.3 to 1.5 ms at 300k events); most
    requests of a scrolling or returning user find nothing new. Before each lookup the
    cache follows the store's sequence numbers (one primary-key query, see
    :meth:`EventStore.interacting_users_since`) and drops the users who interacted since,
    whichever process stored the event, so a vote is excluded from the very next page.
    User records have no sequence number (they change in batch jobs such as clustering):
    a record older than ``user_ttl_seconds`` is re-read (one primary-key lookup).
    """

    def __init__(self, store: EventStore, per_type: int = DEFAULT_LATEST_PER_TYPE, *,
                 max_users: int = LATEST_CACHE_MAX_USERS,
                 user_ttl_seconds: float = LATEST_CACHE_USER_TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 head: EventHead | None = None) -> None:
        self.store = store
        self.head = head  # per request: skip the catch-up query when nothing is new
        self.per_type = per_type
        self.max_users = max_users
        self.user_ttl_seconds = user_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._seq: int | None = None
        # user -> (user record read at, latest item ids per type, user record or None)
        self._entries: OrderedDict[str, tuple[float, dict[str, list[str]],
                                              dict[str, Any] | None]] = OrderedDict()

    def get(self, user_id: str) -> tuple[dict[str, list[str]], dict[str, Any] | None]:
        """``(latest item ids per lower-cased event type, oldest first; user record)``.
        Callers must not modify what is returned: it is shared between requests."""
        # One lock for catch-up and miss: the store serialises its reads on one
        # connection anyway, and holding it means no entry read before an invalidation
        # can be stored after it.
        with self._lock:
            self._catch_up()
            now = self._clock()
            entry = self._entries.get(user_id)
            if entry is not None and now - entry[0] < self.user_ttl_seconds:
                self._entries.move_to_end(user_id)
                return entry[1], entry[2]
            if entry is None:  # both in one read
                recent, record = self.store.user_context(user_id, per_type=self.per_type)
            else:  # only the record went stale: its events are followed by sequence
                recent, record = entry[1], self.store.get_user(user_id)
            self._entries[user_id] = (now, recent, record)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_users:
                self._entries.popitem(last=False)
            return recent, record

    def last_read(self, user_id: str) -> tuple[dict[str, list[str]], dict[str, Any] | None]:
        """What :meth:`get` last read for ``user_id``, without asking the store (``({},
        None)`` when nothing was): for serving while the store cannot be read."""
        with self._lock:
            entry = self._entries.get(user_id)
        return (entry[1], entry[2]) if entry is not None else ({}, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _catch_up(self) -> None:
        head = self.head.seq() if self.head is not None else None
        if self._seq is None:
            self._seq = self.store.last_seq() if head is None else head
            return
        if head is not None and self._seq >= head:
            return
        while True:
            self._seq, users, complete = self.store.interacting_users_since(self._seq)
            for user in users:
                self._entries.pop(user, None)
            if complete:
                if head is not None:  # the last numbers may be de-duplicated events'
                    self._seq = max(self._seq, head)
                return


# --------------------------------------------------------------------------- rows



# What upsertPoll of a deleted poll's id is told (authors included: a deletion is final).
_DELETED_STAYS = "a deleted poll stays deleted and its id is not used again: choose another id"


def named_polls(events: Iterable[Interaction | Impression]) -> list[str]:
    """Every poll the events name (an interaction's poll and impression list, an
    impression's list), once each: what a deletion refuses events on."""
    polls: dict[str, None] = {}
    for event in events:
        if isinstance(event, Interaction):
            polls[event.item_id] = None
            polls.update(dict.fromkeys(event.impression))
        else:
            polls.update(dict.fromkeys(event.item_ids))
    return list(polls)


def deleted_poll_ids(store: Any) -> set[str]:
    """Every deleted poll's id ``store`` holds a tombstone of."""
    deleted: set[str] = set()
    seq = 0
    while True:
        seq, page = store.deletions_since(seq)
        if not page:
            return deleted
        deleted.update(page)


def without_polls(events: Iterable[_E], polls: set[str],
                  left_out: LeftOut | None = None) -> Iterator[_E]:
    """``events`` as if ``polls`` had never been (training, exports, imports):
    interactions on them left out, them left out of impression lists (an impression
    left with no poll and no recommendation id is dropped); ``left_out`` counts each.
    An event keeps its id (derived from the list as written), so a file imported again
    adds nothing. Lazily: an export streams millions."""
    counts = LeftOut() if left_out is None else left_out
    for e in events:
        if isinstance(e, Interaction):
            if e.item_id in polls:
                counts.interactions += 1
                continue
            if polls.intersection(e.impression):
                counts.lists += 1
                e = replace(e, impression=tuple(p for p in e.impression if p not in polls))
        else:
            trimmed = bool(polls.intersection(e.item_ids))
            if trimmed:
                e = replace(e, item_ids=tuple(p for p in e.item_ids if p not in polls))
            if not e.item_ids and not e.recommendation_id:
                counts.impressions += 1
                continue
            counts.lists += trimmed
        yield e


def check_may_delete(item_id: str, author: str | None, acting_user: str,
                     admin: bool) -> None:
    """Only a poll's stored author or an internal tool may delete it (both stores call
    this in their write transaction, as :func:`owned_poll_fields`)."""
    if not admin and author != acting_user:
        raise NotPollAuthor(
            f"poll {item_id!r:.80} belongs to another author; only its author or an "
            "internal tool may delete it")


def _stored_author(found: Sequence[Any] | None, event_only: object, item_id: str,
                   ) -> str | None:
    """The author of a poll about to be deleted: its record's, or None for a poll that
    imported events name without a record (only internal tools may delete those)."""
    if found is not None:
        return found[0]
    if event_only:
        return None
    raise UnknownPolls([item_id])


def without_deleted(gone: set[str], interactions: Iterable[Interaction],
                    impressions: Iterable[Impression], left_out: LeftOut,
                    ) -> tuple[Iterable[Interaction], Iterable[Impression]]:
    """An import's events as the stores take them: those naming a poll of ``gone`` (every
    tombstone, read in the import's transaction) skipped or trimmed, see
    :meth:`EventStore.import_bulk`. Unchanged, and not scanned, when none is deleted."""
    if not gone:
        return interactions, impressions
    return (without_polls(interactions, gone, left_out),
            without_polls(impressions, gone, left_out))


def _deleted_among(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    gone: set[str] = set()
    for start in range(0, len(ids), 500):  # SQLite's variable limit, with room
        chunk = ids[start:start + 500]
        gone.update(row[0] for row in conn.execute(
            f"SELECT item_id FROM deleted_polls WHERE item_id IN ({', '.join('?' * len(chunk))})",
            tuple(chunk)))
    return gone


def _refuse_deleted(conn: sqlite3.Connection, polls: Sequence[str],
                    fix: str | None = None) -> None:
    """:class:`DeletedPolls` when any of ``polls`` was deleted (call in the write's
    transaction: a deletion committed before it is seen, none can slip in after)."""
    gone = _deleted_among(conn, polls) if polls else set()
    if gone:
        named = [p for p in polls if p in gone]
        raise DeletedPolls(named) if fix is None else DeletedPolls(named, fix)


def check_deletion(deletion: PollDeletion) -> None:
    """What a store takes as a tombstone from elsewhere: ids as every write's (a poll
    imported events named without a record has no author), a date as DELETED_AT."""
    if not isinstance(deletion, PollDeletion):
        raise InvalidEvent(f"a tombstone must be a PollDeletion, got "
                           f"{type(deletion).__name__}")
    _check_id("ITEM_ID of a deleted poll", deletion.item_id)
    about = f"of deleted poll {deletion.item_id!r:.60}"
    if deletion.author_id is not None:
        _check_id(f"AUTHOR_ID {about}", deletion.author_id)
    _check_id(f"DELETED_BY {about}", deletion.deleted_by)
    at = deletion.deleted_at
    if not isinstance(at, int) or isinstance(at, bool) or not MIN_TIMESTAMP <= at <= MAX_TIMESTAMP:
        raise InvalidEvent(f"DELETED_AT {about} is {at!r:.40}, not a date (years 1 to "
                           "9999); send epoch seconds")


def _deletion_row(deletion: PollDeletion, rules: EventRules | None = None,
                  ) -> tuple[str, str | None, str, int]:
    """The row of a tombstone from elsewhere; with ``rules``, its time must pass their
    history rule too, as an imported event's (EventRules.check_deletion_history)."""
    check_deletion(deletion)
    if rules is not None:
        rules.check_deletion_history(deletion.deleted_at,
                                     f"DELETED_AT of deleted poll {deletion.item_id!r:.60}")
    return deletion.item_id, deletion.author_id, deletion.deleted_by, deletion.deleted_at


def _store_deletions(conn: sqlite3.Connection,
                     rows: Sequence[tuple[str, str | None, str, int]]) -> int:
    """Store tombstones and drop their polls' catalog rows (in a write transaction).
    Each is stamped with the next catalog sequence number, as :meth:`delete_item`
    stamps one, so every worker drops the poll (deletions_since); numbers of those
    already stored are skipped. Returns how many were new."""
    if not rows:
        return 0
    count = "SELECT count(*) FROM deleted_polls"
    before = conn.execute(count).fetchone()[0]
    start = conn.execute("SELECT value FROM catalog_seq").fetchone()[0]
    conn.executemany(_IMPORT_DELETION, ((*row, start + n) for n, row in enumerate(rows, 1)))
    conn.executemany("DELETE FROM items WHERE item_id = ?", ((row[0],) for row in rows))
    conn.execute("UPDATE catalog_seq SET value = ?", (start + len(rows),))
    return conn.execute(count).fetchone()[0] - before


def owned_poll_fields(item_id: str, record: Mapping[str, Any], found: Sequence[Any] | None,
                      acting_user: str, admin: bool, has_events: bool = False
                      ) -> dict[str, Any]:
    """The fields to store for a poll write, after the ownership rule (both stores call
    this inside their write transaction). ``found`` is the stored poll's (author,
    creation time), or None for a new poll. A new poll is authored by the caller and dated
    now unless given; an existing one changes only by its stored author or an admin, is
    never given away and never re-dated. ``has_events``: imported interactions name the
    poll though it has no record; it exists, and only an admin may write its record.
    Raises :class:`NotPollAuthor`, or :class:`InvalidEvent` for a new date."""
    fields = dict(record)
    if found is None and has_events and not admin:
        raise NotPollAuthor(
            f"poll {item_id!r:.80} already exists (imported events name it) without "
            "a catalog record; only an internal tool may write it: choose another id")
    if found is None:
        if fields.get("CREATION_TIMESTAMP") is None:
            fields["CREATION_TIMESTAMP"] = int(time.time())
        if fields.get("AUTHOR_ID") is None:
            fields["AUTHOR_ID"] = acting_user
        elif not admin and fields["AUTHOR_ID"] != acting_user:
            raise NotPollAuthor(
                f"a new poll's authorId must be the caller ({acting_user!r:.80}); "
                "leave it out to author the poll yourself")
    elif not admin:
        stored = found[0]
        if stored != acting_user:
            raise NotPollAuthor(
                f"poll {item_id!r:.80} belongs to another author; only its author "
                "or an internal tool may change it")
        if fields.get("AUTHOR_ID", stored) != stored:
            raise NotPollAuthor(
                f"poll {item_id!r:.80}: an author cannot give a poll to someone "
                "else; leave authorId out or set it to yourself")
    if found is not None and found[1] is not None and fields.get(
            "CREATION_TIMESTAMP", found[1]) != found[1]:
        # A poll's age drives its rank: re-dating an old poll to now on every edit would
        # keep it "newest" for ever. Refused rather than ignored, so the caller learns
        # its value was not stored; admins too (history is rewritten by the import).
        raise InvalidEvent(
            f"poll {item_id!r:.80} was created at {found[1]}; createdAt cannot change "
            "once a poll exists: leave it out (or send the stored value)")
    return fields

def _admitted(events: Iterable[_E], rules: EventRules) -> Iterator[_E]:
    for event in events:
        rules.check_history(event)
        yield event


def distinct_impressions(item_ids: Iterable[str]) -> tuple[str, ...]:
    """A poll is shown once per list however often a client repeats it: duplicates would
    count as extra impressions (and lower the poll's exploration bonus). First occurrence
    wins, so the order shown is kept. Every store, the Personalize backend and
    training from a directory keep lists this way."""
    return tuple(dict.fromkeys(item_ids))


def _impression_ids(item_ids: tuple[str, ...], what: str) -> tuple[str, ...]:
    """The list as every store keeps it (each poll once, see
    :func:`distinct_impressions`), or :class:`InvalidEvent`."""
    item_ids = distinct_impressions(item_ids)  # every store writes lists through here
    for item in item_ids:
        _check_id(f"item id in the {what}", item)
        if "|" in item:
            raise InvalidEvent(
                f"item id {item!r} in the {what} contains '|', which separates ids in "
                "Personalize's IMPRESSION field; rename the poll id"
            )
    joined = sum(map(len, item_ids)) + len(item_ids) - 1
    if joined > MAX_IMPRESSION_LENGTH:
        raise InvalidEvent(
            f"the {what} lists {len(item_ids)} polls, {joined} characters once joined with "
            f"'|'; Personalize allows at most {MAX_IMPRESSION_LENGTH}: send only the polls "
            "that were visible, or split them into several impression events"
        )
    return item_ids


def _json_or_none(item_ids: tuple[str, ...]) -> str | None:
    return json.dumps(item_ids) if item_ids else None


def _checked_interaction(e: Interaction) -> tuple[float | None, tuple[str, ...]]:
    """The value and the impression list a store writes for ``e``, or InvalidEvent."""
    if not isinstance(e, Interaction):
        raise InvalidEvent(f"expected an Interaction, got {type(e).__name__}")
    _check_id("event_id", e.event_id)
    _check_id("user_id", e.user_id)
    _check_id("item_id", e.item_id)
    check_event_type(e.event_type)
    _check_timestamp(e.timestamp)
    value = check_event_value(e.event_value)
    if e.recommendation_id is not None:
        _check_id("recommendation_id", e.recommendation_id)
    return value, _impression_ids(tuple(e.impression), "impression list")


def _interaction_row(e: Interaction) -> tuple[Any, ...]:
    value, shown = _checked_interaction(e)
    return (
        e.event_id, _INTERACTION, e.user_id, e.item_id, e.event_type, value, e.timestamp,
        _json_or_none(shown), e.recommendation_id,
    )


def _checked_impression(e: Impression) -> tuple[str, ...]:
    """The poll list a store writes for ``e``, or InvalidEvent."""
    if not isinstance(e, Impression):
        raise InvalidEvent(f"expected an Impression, got {type(e).__name__}")
    _check_id("event_id", e.event_id)
    _check_id("user_id", e.user_id)
    _check_timestamp(e.timestamp)
    if e.recommendation_id is not None:
        _check_id("recommendation_id", e.recommendation_id)
    elif not e.item_ids:
        raise InvalidEvent(
            "an impression event needs the polls that were shown (item_ids) or the "
            "recommendation_id of the response that showed them"
        )
    return _impression_ids(tuple(e.item_ids), "impression event")


def _impression_row(e: Impression) -> tuple[Any, ...]:
    shown = _checked_impression(e)
    return (
        e.event_id, _IMPRESSION, e.user_id, None, None, None, e.timestamp,
        _json_or_none(shown), e.recommendation_id,
    )


def check_storable(event: Interaction | Impression) -> None:
    """Raise :class:`InvalidEvent` unless every store would write ``event`` (its ids,
    type, time, value and poll list): an import checks each line with this first, so
    that it names every refused line instead of the first event the store refuses."""
    if isinstance(event, Impression):
        _checked_impression(event)
    else:
        _checked_interaction(event)


def once_per_poll(event: Interaction | Impression, rules: EventRules | None) -> str | None:
    """The once_per_poll column of ``event``: its canonical type when ``rules`` say a
    user has at most one event of that type per poll (a vote), else NULL (no such limit;
    no rules, no limit: the store then keeps what it is given, as before)."""
    return None if rules is None else rules.once_per_poll_type(event)


def _event_row(event: Interaction | Impression) -> tuple[Any, ...]:
    if isinstance(event, Impression):
        return _impression_row(event)
    return _interaction_row(event)


def _interaction_from(row: tuple[Any, ...]) -> Interaction:
    _, _, event_id, user_id, item_id, event_type, value, ts, impression, rec_id = row
    return Interaction(
        user_id, item_id, event_type, ts, value,
        tuple(json.loads(impression)) if impression else (), rec_id, event_id,
    )


def _impression_from(row: tuple[Any, ...]) -> Impression:
    _, _, event_id, user_id, _, _, _, ts, impression, rec_id = row
    return Impression(
        user_id, tuple(json.loads(impression)) if impression else (), ts, rec_id, event_id
    )


def _event_from(row: tuple[Any, ...]) -> Interaction | Impression:
    return _interaction_from(row) if row[1] == _INTERACTION else _impression_from(row)


def _json_default(value: object) -> Any:
    # numpy/pandas scalars (int64, float32, ...) expose .item(); importing numpy here
    # just to recognise them would be a heavy import for a small courtesy.
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _catalog_row(key: str, record: Mapping[str, Any], number: int) -> tuple[str, str]:
    if not isinstance(record, Mapping):
        raise InvalidEvent(
            f"catalog record #{number} must be a mapping, got {type(record).__name__}"
        )
    ident = record.get(key)
    _check_id(f"{key} of record #{number}", ident)
    fields = {k: v for k, v in record.items() if k != key}
    try:
        text = json.dumps(fields, default=_json_default, allow_nan=False, ensure_ascii=False,
                          separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(
            f"{key} {ident!r}: its fields must be JSON values (strings, finite numbers, "
            f"booleans, lists): {exc}"
        ) from exc
    check_text(f"a field of {key} {ident!r}", text)
    return ident, text  # type: ignore[return-value]


def _upsert_stamped(conn: sqlite3.Connection, rows: Iterable[tuple[str, str]]) -> int:
    """Upsert catalog rows, each stamped with the next catalog sequence number (call
    inside a write transaction: writers are serialised, so numbers follow commit order
    and a reader that has seen N never misses a later write)."""
    start = conn.execute("SELECT value FROM catalog_seq").fetchone()[0]
    numbers = itertools.count(start + 1)
    last = [start]

    def stamped() -> Iterator[tuple[str, str, int]]:
        for item_id, fields in rows:
            last[0] = next(numbers)
            yield item_id, fields, last[0]

    written = conn.executemany(_UPSERT_ITEM, stamped()).rowcount
    conn.execute("UPDATE catalog_seq SET value = ?", (last[0],))
    return written


def _record_from(key: str, row: tuple[str, str]) -> dict[str, Any]:
    return {key: row[0], **json.loads(row[1])}
