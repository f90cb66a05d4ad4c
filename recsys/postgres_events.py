"""The event store on PostgreSQL: the SQLite store's contract, shared by several hosts.

Same behaviour as :class:`recsys.events.EventStore` (the contract suite runs both), with
PostgreSQL doing the work SQLite's single writer did:

* Durability: a call returns after COMMIT, which PostgreSQL acknowledges once the WAL is
  flushed (``synchronous_commit`` on, its default), so a returned append survives a
  crash of the server or of the gateway.
* Sequence numbers in commit order. A BIGSERIAL would hand out numbers at INSERT time,
  and two transactions can commit in the other order: a follower that has read up to N
  could miss a lower number committed later. So every event write first locks the one
  row of ``event_seq`` (``UPDATE ... RETURNING``, held to COMMIT) and numbers its events
  after it: writers of events take turns, as SQLite's writers do, and a number is
  visible only after every lower one is. Batches keep the turns short (one statement
  per ``append_many``, ``COPY`` for imports). ``catalog_seq`` does the same for polls.
* De-duplication: ``(user_id, event_id)`` is UNIQUE (ids are per user, as in SQLite);
  writes are ``ON CONFLICT DO NOTHING``.
* Connections come from the shared stores' pool (:func:`recsys.store_db.open_pool`),
  which checks each one before handing it out, so after a server restart the store
  reconnects by itself. While the server cannot be reached, calls raise
  :class:`StoreUnavailable` (``retryable``) after at most the pool's wait, never a raw
  psycopg error; a store may even be opened while the server is down.
* Schema: versioned migrations of the "events" component in ``hunch_schema``, applied by
  ``hunch db upgrade`` under a transaction-level advisory lock, so two hosts upgrading at
  once is safe (:mod:`recsys.store_db`, shared with the filter and promotion stores). A
  database behind this code is refused with :class:`SchemaOutdated` until then: other
  hosts may still run the old code, upgrading is a deliberate step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import psycopg

from recsys import store_db
from recsys.admission import DeletedPolls, EventRules, UnknownPolls
from recsys.errors import InvalidEvent
from recsys.event_stores import StoreUnavailable, describe_url
from recsys.events import (
    _EVENT_COLUMNS,
    _IMPRESSION,
    _INTERACTION,
    DEFAULT_EVENTS_SINCE_LIMIT,
    DEFAULT_LATEST_PER_TYPE,
    PAGE_SIZE,
    EventStoreError,
    ImportCounts,
    ImportMode,
    Impression,
    Interaction,
    _admitted,
    _catalog_row,
    _event_from,
    _event_row,
    _impression_from,
    _impression_row,
    _interaction_from,
    _interaction_row,
    _record_from,
)
from recsys.events import _check_id as check_id
from recsys.events import (
    _DELETED_STAYS,
    FORGET_BATCH_ROWS,
    LeftOut,
    PollDeletion,
    _deletion_row,
    check_may_delete,
    named_polls,
    once_per_poll,
    owned_poll_fields,
    without_deleted,
)
from recsys.events import _check_timestamp as check_timestamp

COMPONENT = "events"  # this store's row in hunch_schema
# Catalog rows fetched per IN-list query (a bound array: no variable limit to respect,
# only the size of one message).
_ID_CHUNK = 5_000

_T = TypeVar("_T")

# MIGRATIONS[i] brings the schema from version i to i + 1. Append; never edit one.
MIGRATIONS: list[str] = [
    # 1: the SQLite store's tables, plus event_seq and the JSON merge patch function
    # Ids are COLLATE "C": byte order as in SQLite, and index comparisons by memcmp
    # instead of the locale's rules (ids are opaque, never sorted for people).
    """
    CREATE TABLE events (
        seq BIGINT PRIMARY KEY,  -- numbered under event_seq's row lock: commit order
        event_id TEXT COLLATE "C" NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('interaction', 'impression')),
        user_id TEXT COLLATE "C" NOT NULL,
        item_id TEXT COLLATE "C",
        event_type TEXT,  -- stored as given, compared lower-cased (as SQLite's NOCASE)
        event_value DOUBLE PRECISION,
        timestamp BIGINT NOT NULL,
        impression TEXT,  -- JSON array of item ids, NULL when there is no explicit list
        recommendation_id TEXT
    );
    CREATE INDEX events_by_time ON events (kind, timestamp, seq);
    CREATE INDEX events_by_user ON events (user_id, timestamp);
    -- The highest event sequence number given out; never reset (full imports included).
    CREATE TABLE event_seq (
        one_row INTEGER PRIMARY KEY CHECK (one_row = 0),
        value BIGINT NOT NULL
    );
    INSERT INTO event_seq VALUES (0, 0);
    CREATE TABLE items (
        item_id TEXT COLLATE "C" PRIMARY KEY,
        fields JSONB NOT NULL,  -- the metadata, without ITEM_ID
        updated_seq BIGINT NOT NULL
    );
    CREATE INDEX items_by_update ON items (updated_seq);
    CREATE TABLE catalog_seq (
        one_row INTEGER PRIMARY KEY CHECK (one_row = 0),
        value BIGINT NOT NULL
    );
    INSERT INTO catalog_seq VALUES (0, 0);
    CREATE TABLE users (
        user_id TEXT COLLATE "C" PRIMARY KEY,
        fields JSONB NOT NULL
    );
    CREATE TABLE recommendations (
        recommendation_id TEXT COLLATE "C" PRIMARY KEY,
        user_id TEXT COLLATE "C" NOT NULL,
        item_ids TEXT NOT NULL,  -- JSON array, in the order the response listed them
        timestamp BIGINT NOT NULL
    );
    -- JSON merge patch (RFC 7396), what SQLite's json_patch does: given fields replace
    -- stored ones, a null removes one, objects merge recursively.
    CREATE FUNCTION hunch_merge_patch(target JSONB, patch JSONB) RETURNS JSONB
    LANGUAGE plpgsql IMMUTABLE AS $$
    DECLARE
        result JSONB;
        k TEXT;
        v JSONB;
    BEGIN
        IF jsonb_typeof(patch) IS DISTINCT FROM 'object' THEN
            RETURN patch;
        END IF;
        result := CASE WHEN jsonb_typeof(target) = 'object' THEN target ELSE '{}' END;
        FOR k, v IN SELECT key, value FROM jsonb_each(patch) LOOP
            IF jsonb_typeof(v) = 'null' THEN
                result := result - k;
            ELSE
                result := jsonb_set(result, ARRAY[k], hunch_merge_patch(result -> k, v));
            END IF;
        END LOOP;
        RETURN result;
    END
    $$;
    """,
    # 2: event ids unique per user, not globally: one user's client id silently dropped
    # another user's event. Rows are untouched (ids unique overall are unique per user).
    # Not additive: code one release behind writes ON CONFLICT (event_id), which no
    # longer matches a constraint, so its appends fail with EventStoreError (nothing
    # stored, nothing silently dropped) until its host runs this code. The ALTER holds
    # an exclusive lock on events while it builds the index (1M events: ~4 s).
    """
    ALTER TABLE events DROP CONSTRAINT events_event_id_key,
        ADD CONSTRAINT events_user_event_key UNIQUE (user_id, event_id);
    """,
    # 3: a user's vote counts once per poll, as in SQLite's migration 4: writers with
    # rules set once_per_poll to the canonical type of such events, and the partial
    # unique index keeps the first of a (user, poll, type); the writes' untargeted ON
    # CONFLICT DO NOTHING skips the rest. Additive: code one release behind sets nothing,
    # so the index never refuses its writes. Rows stored before stay NULL.
    """
    ALTER TABLE events ADD COLUMN once_per_poll TEXT COLLATE "C";
    CREATE UNIQUE INDEX events_once_per_poll ON events (user_id, item_id, once_per_poll)
        WHERE once_per_poll IS NOT NULL;
    """,
    # 4: as SQLite's migration 5: an index to expire old recommendations, and the polls
    # imported interactions name without a catalog record (only an internal tool may
    # write their record). Additive: code one release behind neither reads nor writes
    # them (its imports do not note such polls; upsertPoll's check then misses those).
    """
    CREATE INDEX recommendations_by_time ON recommendations (timestamp);
    CREATE TABLE event_only_polls (item_id TEXT COLLATE "C" PRIMARY KEY);
    INSERT INTO event_only_polls
        SELECT DISTINCT e.item_id FROM events AS e WHERE e.kind = 'interaction'
        AND e.item_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM items AS i WHERE i.item_id = e.item_id);
    INSERT INTO event_only_polls
        SELECT DISTINCT j.value FROM events AS e,
            jsonb_array_elements_text(e.impression::jsonb) AS j(value)
        WHERE e.impression IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM items AS i WHERE i.item_id = j.value)
        ON CONFLICT DO NOTHING;
    """,
    # 5: deleted polls, as SQLite's migration 6 (the tombstone; the catalog row goes).
    # Additive; code one release behind neither reads nor honours tombstones, so the
    # database keeps a deleted id out of `items` itself (below). Events an old host
    # still stores on a deleted poll are left out of training and serving by this code.
    """
    CREATE TABLE deleted_polls (
        item_id TEXT COLLATE "C" PRIMARY KEY,
        author_id TEXT COLLATE "C",
        deleted_by TEXT COLLATE "C" NOT NULL,
        deleted_at BIGINT NOT NULL,
        deleted_seq BIGINT NOT NULL
    );
    CREATE INDEX deleted_polls_by_seq ON deleted_polls (deleted_seq);
    -- A deleted id stays deleted whoever writes: during a rolling deploy a host one
    -- release behind upserted it again (its text and author back, served at once).
    -- The row is skipped, as this code's own guard skips it.
    CREATE FUNCTION hunch_keep_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM deleted_polls WHERE item_id = NEW.item_id) THEN
            RETURN NULL;
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER items_keep_deleted BEFORE INSERT ON items
        FOR EACH ROW EXECUTE FUNCTION hunch_keep_deleted();
    -- An append: the counter's row lock first (a deletion holds it to COMMIT), then the
    -- numbered insert, a later statement with a snapshot of its own, so it sees a
    -- deletion that committed while the lock waited: no vote lands after a deletion
    -- answered. Nothing of the batch when it names a deleted poll. One call, one round
    -- trip: three statements from the client took single appends from ~1,800 to ~900
    -- a second; this keeps ~80 % of the one statement it replaces.
    CREATE FUNCTION hunch_append_events(n BIGINT, batch JSON, polls TEXT[]) RETURNS BIGINT
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        written BIGINT;
    BEGIN
        PERFORM value FROM event_seq FOR UPDATE;
        WITH taken AS (UPDATE event_seq SET value = value + n RETURNING value - n AS base)
        INSERT INTO events (seq, event_id, kind, user_id, item_id, event_type, event_value,
                            timestamp, impression, recommendation_id, once_per_poll)
        SELECT taken.base + e.n, e.event_id, e.kind, e.user_id, e.item_id, e.event_type,
               e.event_value, e.ts, e.impression, e.recommendation_id, e.once_per_poll
        FROM taken, json_to_recordset(batch) AS e(n int8, event_id text, kind text,
             user_id text, item_id text, event_type text, event_value float8, ts int8,
             impression text, recommendation_id text, once_per_poll text)
        WHERE NOT EXISTS (SELECT 1 FROM deleted_polls WHERE item_id = ANY(polls))
        ORDER BY e.n
        -- Untargeted: a retried (user, event id) or a second vote (migration 3) is
        -- skipped; a clash on seq cannot happen while every writer numbers under
        -- event_seq's row lock.
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        RETURN written;
    END $$;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_SELECT_EVENTS = f"SELECT {_EVENT_COLUMNS} FROM events"
# Take the next ``n`` numbers and insert the events numbered in the order given
# (hunch_append_events, migration 5); a duplicate id is skipped (its number is not
# reused, as in SQLite: numbers may skip). One call, so in autocommit mode it is its own
# transaction: one round trip and one WAL flush per batch. The batch travels as one JSON
# array (json.dumps is C; psycopg's text arrays cost 4 ms per 100 events).
_APPEND = "SELECT hunch_append_events(%(n)s, %(rows)s::json, %(polls)s::text[])"
_RECORD_RECOMMENDATIONS = (
    "INSERT INTO recommendations (recommendation_id, user_id, item_ids, timestamp) "
    "SELECT r.recommendation_id, r.user_id, r.item_ids, r.ts "
    "FROM json_to_recordset(%s::json) AS r(recommendation_id text, user_id text, "
    "item_ids text, ts int8) ON CONFLICT (recommendation_id) DO NOTHING"
)
_RECOMMENDATION_FIELDS = ("recommendation_id", "user_id", "item_ids", "ts")
_ROW_FIELDS = ("n", "event_id", "kind", "user_id", "item_id", "event_type", "event_value",
               "ts", "impression", "recommendation_id", "once_per_poll")
# A deleted poll's id is skipped (its tombstone stays): no write brings it back.
_UPSERT_ITEM = (
    "INSERT INTO items (item_id, fields, updated_seq) "
    "SELECT %(id)s::text, hunch_merge_patch('{}', %(fields)s::jsonb), %(seq)s::bigint "
    "WHERE NOT EXISTS (SELECT 1 FROM deleted_polls WHERE item_id = %(id)s::text) "
    "ON CONFLICT (item_id) DO UPDATE SET "
    "fields = hunch_merge_patch(items.fields, %(fields)s::jsonb), updated_seq = %(seq)s"
)
# SQLite's _IMPORT_DELETION: the earlier deletion is kept, the first sequence number too.
_IMPORT_DELETION = (
    "INSERT INTO deleted_polls (item_id, author_id, deleted_by, deleted_at, deleted_seq) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (item_id) DO UPDATE SET "
    "author_id = excluded.author_id, deleted_by = excluded.deleted_by, "
    "deleted_at = excluded.deleted_at WHERE excluded.deleted_at < deleted_polls.deleted_at"
)
_UPSERT_USER = (
    "INSERT INTO users (user_id, fields) VALUES (%(id)s, hunch_merge_patch('{}', %(fields)s::jsonb)) "
    "ON CONFLICT (user_id) DO UPDATE SET fields = hunch_merge_patch(users.fields, %(fields)s::jsonb)"
)


class PostgresEventStore:
    """Durable store of interactions, impressions, the catalog and recommendations in
    PostgreSQL; see the module docstring. Thread-safe (a connection pool); any number
    of processes and hosts may open the same database."""

    def __init__(self, url: str, rules: EventRules | None = None, *,
                 pool_timeout: float | None = None, upgrade: bool = False) -> None:
        """``pool_timeout``: seconds a call waits for a connection before raising
        :class:`StoreUnavailable` (default the pool's). ``upgrade``: apply pending
        migrations first (``hunch db upgrade``, tests)."""
        self.url = url
        self.rules = rules
        self.pool_timeout = pool_timeout
        self._shown = describe_url(url)
        self._pool = store_db.open_pool(url, name="hunch-events")
        self._schema = store_db.SchemaGate(self._pool, COMPONENT, SCHEMA_VERSION)
        try:
            with self._translated("open"):
                self._schema.open(self.upgrade if upgrade else None)
        except BaseException:  # SchemaOutdated: no pool threads left behind
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """psycopg's errors as the store's typed ones."""
        try:
            yield
        except StoreUnavailable:
            raise
        except (psycopg.OperationalError, store_db.StoreUnavailable) as exc:
            # OperationalError includes the pool's PoolTimeout
            raise StoreUnavailable(
                f"the event store {self._shown} is unreachable ({doing}: "
                f"{_first_line(exc)}); retry in a moment, events are de-duplicated by "
                "id so a repeated write is safe") from exc
        except psycopg.Error as exc:
            raise EventStoreError(
                f"the event store {self._shown} failed to {doing}: {_first_line(exc)}"
            ) from exc

    @contextmanager
    def _connection(self, doing: str, *, schema_checked: bool = True,
                    ) -> Iterator[psycopg.Connection]:
        if self._pool is None:
            raise EventStoreError(
                f"the event store {self._shown} is closed; open a new store")
        with self._translated(doing):
            if schema_checked:  # once; postponed while the server is down at open
                self._schema.check()
            with self._pool.connection(timeout=self.pool_timeout) as conn:
                yield conn

    def _write(self, work: Callable[[psycopg.Connection], _T], doing: str = "write") -> _T:
        """Run ``work(conn)`` in one transaction: all of it is committed, or none."""
        with self._connection(doing) as conn, conn.transaction():
            return work(conn)

    def _read(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._connection("read") as conn:
            return conn.execute(sql, params).fetchall()

    def schema_version(self) -> int:
        """This component's schema version in the database (0 when never set up)."""
        with self._connection("read the schema version", schema_checked=False) as conn:
            return store_db.schema_version(conn, COMPONENT)

    def schema_versions(self) -> dict[str, int]:
        """Every component's schema version in the database (``hunch db upgrade``)."""
        with self._connection("read the schema versions", schema_checked=False) as conn:
            if conn.execute("SELECT to_regclass('hunch_schema')").fetchone()[0] is None:
                return {}
            return dict(conn.execute(
                "SELECT component, version FROM hunch_schema ORDER BY component").fetchall())

    def upgrade(self) -> None:
        """Apply pending migrations (under the schema lock, see :mod:`recsys.store_db`)."""
        if self._pool is None:
            raise EventStoreError(f"the event store {self._shown} is closed")
        with self._translated("upgrade the schema"):
            store_db.upgrade_component(self._pool, COMPONENT, MIGRATIONS)

    def check_writable(self) -> None:
        """Raise unless a write could be taken now (readiness probes): the server is
        reachable and not a read-only standby."""
        with self._connection("check for writes") as conn:
            if conn.execute("SHOW transaction_read_only").fetchone()[0] == "on":
                raise EventStoreError(
                    f"the event store {self._shown} is read-only (a standby?); point "
                    "HUNCH_STORE_URL at the primary")

    def close(self) -> None:
        """Close the pool; later calls raise :class:`EventStoreError`. Safe to repeat."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresEventStore({self._shown!r})"

    def _events_in_time_order(self, where: str, params: tuple[Any, ...]
                              ) -> Iterator[tuple[Any, ...]]:
        """Rows matching ``where`` by (timestamp, seq), fetched a page at a time."""
        after: tuple[int, int] | None = None
        while True:
            if after is None:
                page_where, page_params = where, params
            else:
                page_where = f"{where} AND (timestamp, seq) > (%s, %s)"
                page_params = params + after
            rows = self._read(
                f"{_SELECT_EVENTS} WHERE {page_where} ORDER BY timestamp, seq "
                f"LIMIT {PAGE_SIZE}", page_params)
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            after = (rows[-1][7], rows[-1][0])

    # ------------------------------------------------------------------ events

    def check_live(self, event: Interaction | Impression) -> None:
        _postgres_row(_event_row(event))
        if self.rules is not None:
            self.rules.check_live(event)

    def append(self, event: Interaction | Impression) -> bool:
        return bool(self.append_many([event]))

    def append_many(self, events: Iterable[Interaction | Impression]) -> int:
        events = list(events)
        # validate all first
        rows = [(*_postgres_row(_event_row(e)), once_per_poll(e, self.rules)) for e in events]
        if self.rules is not None:
            for event in events:
                self.rules.check_live(event)
        if not rows:
            return 0
        payload = json.dumps([dict(zip(_ROW_FIELDS, (n, *row)))
                              for n, row in enumerate(rows, 1)], ensure_ascii=False)
        polls = named_polls(events)
        with self._connection("append events") as conn:
            written = conn.execute(_APPEND, {"n": len(rows), "rows": payload,
                                             "polls": polls}).fetchone()[0]
            if written < len(rows):  # retries and repeated votes, or a deleted poll
                _refuse_deleted(conn, polls)
            return written

    def interactions(self) -> Iterator[Interaction]:
        for row in self._events_in_time_order("kind = %s", (_INTERACTION,)):
            yield _interaction_from(row)

    def impressions(self) -> Iterator[Impression]:
        for row in self._events_in_time_order("kind = %s", (_IMPRESSION,)):
            yield _impression_from(row)

    def events_between(self, start_ts: int, end_ts: int,
                       event_types: Iterable[str] | None = None) -> Iterator[Interaction]:
        where = "kind = %s AND timestamp >= %s AND timestamp < %s"
        params: tuple[Any, ...] = (_INTERACTION, start_ts, end_ts)
        if event_types is not None:
            types = [t.lower() for t in event_types]
            if not types:
                return
            where += " AND lower(event_type) = ANY(%s)"
            params += (types,)
        for row in self._events_in_time_order(where, params):
            yield _interaction_from(row)

    def latest_events(self, user_id: str, per_type: int = DEFAULT_LATEST_PER_TYPE,
                      event_types: Iterable[str] | None = None,
                      ) -> dict[str, list[Interaction]]:
        where = "kind = %s AND user_id = %s"
        params: tuple[Any, ...] = (_INTERACTION, user_id)
        asked: dict[str, str] = {}
        if event_types is not None:
            types = tuple(event_types)
            if not types:
                return {}
            asked = {t.lower(): t for t in types}
            where += " AND lower(event_type) = ANY(%s)"
            params += (list(asked),)
        rows = self._read(
            f"SELECT {_EVENT_COLUMNS} FROM ("
            f"  SELECT *, ROW_NUMBER() OVER (PARTITION BY lower(event_type) "
            f"    ORDER BY timestamp DESC, seq DESC) AS rank"
            f"  FROM events WHERE {where}"
            f") AS ranked WHERE rank <= %s ORDER BY lower(event_type), rank",
            params + (per_type,))
        out: dict[str, list[Interaction]] = {}
        keys: dict[str, str] = {}
        for row in rows:
            event = _interaction_from(row)
            folded = event.event_type.lower()
            key = keys.setdefault(folded, asked.get(folded, event.event_type))
            out.setdefault(key, []).append(event)
        return out

    def events_since(self, seq: int, limit: int = DEFAULT_EVENTS_SINCE_LIMIT,
                     ) -> list[tuple[int, Interaction | Impression]]:
        rows = self._read(f"{_SELECT_EVENTS} WHERE seq > %s ORDER BY seq LIMIT %s",
                          (seq, limit))
        return [(row[0], _event_from(row)) for row in rows]

    def last_seq(self) -> int:
        # The committed counter: a number still being written (row lock held) is not
        # counted, so a follower starting here misses nothing committed after.
        return int(self._read("SELECT value FROM event_seq")[0][0])

    def counts(self) -> dict[str, int]:
        interactions, impressions, items, users = self._read(
            "SELECT (SELECT COUNT(*) FROM events WHERE kind = 'interaction'),"
            " (SELECT COUNT(*) FROM events WHERE kind = 'impression'),"
            " (SELECT COUNT(*) FROM items), (SELECT COUNT(*) FROM users)")[0]
        return {"interactions": interactions, "impressions": impressions,
                "items": items, "users": users}

    def count_events(self, user_id: str | None = None, item_id: str | None = None,
                     event_type: str | None = None, since: int | None = None) -> int:
        where, params = ["kind = %s"], [_INTERACTION]
        for column, value in (("user_id", user_id), ("item_id", item_id),
                              ("lower(event_type)", event_type and event_type.lower()),
                              ("timestamp >=", since)):
            if value is not None:
                where.append(f"{column} %s" if column.endswith(">=") else f"{column} = %s")
                params.append(value)
        return int(self._read(
            f"SELECT COUNT(*) FROM events WHERE {' AND '.join(where)}", params)[0][0])

    def count_items(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM items")[0][0])

    def seq_before(self, timestamp: int) -> int:
        first = self._read("SELECT MIN(seq) FROM events WHERE timestamp > %s",
                           (timestamp,))[0][0]
        return self.last_seq() if first is None else max(0, int(first) - 1)

    def latest_item_ids(self, user_id: str, per_type: int = DEFAULT_LATEST_PER_TYPE,
                        ) -> dict[str, list[str]]:
        rows = self._read(
            "SELECT event_type, item_id FROM ("
            "  SELECT event_type, item_id, timestamp, seq, ROW_NUMBER() OVER ("
            "    PARTITION BY lower(event_type) ORDER BY timestamp DESC, seq DESC) AS rank"
            "  FROM events WHERE kind = %s AND user_id = %s"
            ") AS ranked WHERE rank <= %s ORDER BY timestamp, seq",
            (_INTERACTION, user_id, per_type))
        out: dict[str, list[str]] = {}
        for event_type, item_id in rows:
            out.setdefault(event_type.lower(), []).append(item_id)
        return out

    def user_context(self, user_id: str, per_type: int = DEFAULT_LATEST_PER_TYPE,
                     ) -> tuple[dict[str, list[str]], dict[str, Any] | None]:
        """:meth:`latest_item_ids` and :meth:`get_user` in one statement: a feed request
        whose user is not cached pays one round trip for both, not two."""
        rows = self._read(
            "SELECT event_type, item_id, timestamp, seq FROM ("
            "  SELECT event_type, item_id, timestamp, seq, ROW_NUMBER() OVER ("
            "    PARTITION BY lower(event_type) ORDER BY timestamp DESC, seq DESC) AS rank"
            "  FROM events WHERE kind = %s AND user_id = %s"
            ") AS ranked WHERE rank <= %s"
            " UNION ALL SELECT NULL, fields::text, NULL, NULL FROM users WHERE user_id = %s"
            " ORDER BY timestamp, seq",  # the user's row (no timestamp) sorts last
            (_INTERACTION, user_id, per_type, user_id))
        latest: dict[str, list[str]] = {}
        record: dict[str, Any] | None = None
        for event_type, value, _, _ in rows:
            if event_type is None:
                record = _record_from("USER_ID", (user_id, value))
            else:
                latest.setdefault(event_type.lower(), []).append(value)
        return latest, record

    def interacting_users_since(self, seq: int, limit: int = DEFAULT_EVENTS_SINCE_LIMIT,
                                ) -> tuple[int, set[str], bool]:
        rows = self._read(
            "SELECT seq, kind, user_id FROM events WHERE seq > %s ORDER BY seq LIMIT %s",
            (seq, limit))
        if not rows:
            return seq, set(), True
        users = {user for _, kind, user in rows if kind == _INTERACTION}
        return rows[-1][0], users, len(rows) < limit

    # ------------------------------------------------------------------ impressions

    def record_recommendations(self, rows: Iterable[tuple[str, str, Iterable[str], int]],
                               ) -> int:
        checked = []
        for recommendation_id, user_id, item_ids, timestamp in rows:
            items = tuple(item_ids)
            check_id("recommendation_id", recommendation_id)
            check_id("user_id", user_id)
            for item in items:
                check_id("item id in the recommendation", item)
            check_timestamp(timestamp)
            checked.append(_postgres_row(
                (recommendation_id, user_id, json.dumps(items), timestamp)))
        if not checked:
            return 0
        # One JSON document, as append_many sends events: four text arrays cost psycopg
        # a regex escape per element (the item lists are quoted JSON), and one statement
        # is atomic without BEGIN/COMMIT round trips: ~250 us of a worker's CPU per feed
        # response before, ~55 us this way (batches of 5 responses of 20 polls).
        payload = json.dumps([dict(zip(_RECOMMENDATION_FIELDS, row)) for row in checked],
                             ensure_ascii=False)
        with self._connection("record recommendations") as conn:  # one statement: atomic
            return conn.execute(_RECORD_RECOMMENDATIONS, (payload,)).rowcount

    def forget_recommendations_before(self, timestamp: int,
                                      batch: int = FORGET_BATCH_ROWS) -> int:
        return self._write(lambda conn: conn.execute(
            "DELETE FROM recommendations WHERE recommendation_id IN (SELECT "
            "recommendation_id FROM recommendations WHERE timestamp < %s LIMIT %s)",
            (timestamp, batch)).rowcount, "forget recommendations")

    def record_recommendation(self, recommendation_id: str, user_id: str,
                              item_ids: Iterable[str], timestamp: int) -> bool:
        return bool(self.record_recommendations([(recommendation_id, user_id, item_ids,
                                                   timestamp)]))

    def recommendation_items(self, recommendation_id: str) -> tuple[str, ...] | None:
        rows = self._read(
            "SELECT item_ids FROM recommendations WHERE recommendation_id = %s",
            (recommendation_id,))
        return tuple(json.loads(rows[0][0])) if rows else None

    def impression_counts(self, since: int | None = None) -> dict[str, int]:
        where, params = ("WHERE e.timestamp >= %s", (since,)) if since is not None else ("", ())
        rows = self._read(
            "SELECT shown, COUNT(*) FROM events AS e CROSS JOIN LATERAL "
            "jsonb_array_elements_text(COALESCE(e.impression, (SELECT r.item_ids FROM "
            "recommendations AS r WHERE r.recommendation_id = e.recommendation_id))::jsonb"
            f") AS shown {where} GROUP BY shown", params)
        return {item: int(n) for item, n in rows}

    # ------------------------------------------------------------------ catalog

    def upsert_items(self, records: Iterable[Mapping[str, Any]]) -> int:
        rows = [_catalog_pg_row("ITEM_ID", r, n) for n, r in enumerate(records, 1)]
        if not rows:
            return 0
        return self._write(lambda conn: _upsert_stamped(conn, rows), "upsert polls")

    def upsert_item(self, record: Mapping[str, Any], *, acting_user: str,
                    admin: bool = False) -> dict[str, Any]:
        item_id, _ = _catalog_pg_row("ITEM_ID", record, 1)  # validates before any lock

        def work(conn: psycopg.Connection) -> dict[str, Any]:
            # The catalog counter's row lock first: it serialises every poll write, so
            # two first writes of one new id cannot both see "no such poll"; FOR UPDATE
            # then holds the poll itself until COMMIT.
            conn.execute("SELECT value FROM catalog_seq FOR UPDATE")
            _refuse_deleted(conn, [item_id], _DELETED_STAYS)
            found = conn.execute(
                "SELECT fields ->> 'AUTHOR_ID', fields -> 'CREATION_TIMESTAMP' FROM items "
                "WHERE item_id = %s FOR UPDATE",
                (item_id,)).fetchone()
            named = found is None and conn.execute(
                "SELECT 1 FROM event_only_polls WHERE item_id = %s", (item_id,)).fetchone()
            fields = owned_poll_fields(item_id, record, found, acting_user, admin,
                                       has_events=bool(named))
            _upsert_stamped(conn, [_catalog_pg_row("ITEM_ID", fields, 1)])
            row = conn.execute("SELECT item_id, fields::text FROM items WHERE item_id = %s",
                               (item_id,)).fetchone()
            return _record_from("ITEM_ID", row)

        return self._write(work, "upsert a poll")

    def delete_item(self, item_id: str, *, acting_user: str, admin: bool = False,
                    now: int | None = None) -> PollDeletion:
        check_id("poll id", item_id)
        _postgres_row((item_id, acting_user))
        at = int(time.time()) if now is None else now

        def work(conn: psycopg.Connection) -> PollDeletion:
            # Both counters' row locks, held to COMMIT: poll writes (catalog_seq) and
            # event appends (event_seq) wait, then see the tombstone. event_seq first,
            # as import_bulk takes them: the other order deadlocked with an import.
            conn.execute("SELECT value FROM event_seq FOR UPDATE")
            seq = conn.execute("SELECT value FROM catalog_seq FOR UPDATE").fetchone()[0] + 1
            gone = conn.execute(
                "SELECT author_id, deleted_by, deleted_at FROM deleted_polls "
                "WHERE item_id = %s", (item_id,)).fetchone()
            if gone is not None:
                check_may_delete(item_id, gone[0], acting_user, admin)
                return PollDeletion(item_id, *gone, already=True)
            found = conn.execute("SELECT fields ->> 'AUTHOR_ID' FROM items WHERE item_id = %s",
                                 (item_id,)).fetchone()
            named = found is None and conn.execute(
                "SELECT 1 FROM event_only_polls WHERE item_id = %s", (item_id,)).fetchone()
            if found is None and not named:
                raise UnknownPolls([item_id])
            author = found[0] if found is not None else None
            check_may_delete(item_id, author, acting_user, admin)
            conn.execute("DELETE FROM items WHERE item_id = %s", (item_id,))
            conn.execute("INSERT INTO deleted_polls (item_id, author_id, deleted_by, "
                         "deleted_at, deleted_seq) VALUES (%s, %s, %s, %s, %s)",
                         (item_id, author, acting_user, at, seq))
            conn.execute("UPDATE catalog_seq SET value = %s", (seq,))
            return PollDeletion(item_id, author, acting_user, at)

        return self._write(work, "delete a poll")

    def deleted_item_ids(self, item_ids: Iterable[str]) -> list[str]:
        ids = list(dict.fromkeys(item_ids))
        with self._connection("read deleted polls") as conn:
            gone = _deleted_among(conn, ids)
        return [i for i in ids if i in gone]

    def deletions_since(self, seq: int, limit: int = PAGE_SIZE,
                        ) -> tuple[int, dict[str, int]]:
        rows = self._read(
            "SELECT item_id, deleted_at, deleted_seq FROM deleted_polls WHERE deleted_seq > %s "
            "ORDER BY deleted_seq LIMIT %s", (seq, limit))
        if not rows:
            return seq, {}
        return rows[-1][2], {row[0]: row[1] for row in rows}

    def deletions(self) -> Iterator[PollDeletion]:
        after: tuple[int, str] = (-1, "")
        while True:
            rows = self._read(
                "SELECT item_id, author_id, deleted_by, deleted_at, deleted_seq "
                "FROM deleted_polls WHERE (deleted_seq, item_id) > (%s, %s) "
                f"ORDER BY deleted_seq, item_id LIMIT {PAGE_SIZE}", after)
            yield from (PollDeletion(*row[:4]) for row in rows)
            if len(rows) < PAGE_SIZE:
                return
            after = (rows[-1][4], rows[-1][0])

    def import_deletions(self, deletions: Iterable[PollDeletion]) -> int:
        rows = [_pg_deletion_row(d, self.rules) for d in deletions]  # before any lock

        def work(conn: psycopg.Connection) -> int:
            # Both counters' row locks, in delete_item's order: appends and poll writes
            # wait, then see the tombstones.
            conn.execute("SELECT value FROM event_seq FOR UPDATE")
            return _store_deletions(conn, rows)

        return self._write(work, "import deleted polls") if rows else 0

    def upsert_users(self, records: Iterable[Mapping[str, Any]]) -> int:
        rows = [_catalog_pg_row("USER_ID", r, n) for n, r in enumerate(records, 1)]
        if not rows:
            return 0
        return self._write(lambda conn: _upsert_users(conn, rows), "upsert users")

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT item_id, fields::text FROM items WHERE item_id = %s",
                          (item_id,))
        return _record_from("ITEM_ID", rows[0]) if rows else None

    def stored_event_ids(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """The (user id, event id) pairs among ``pairs`` that the store holds."""
        pairs = list(dict.fromkeys(pairs))
        found: set[tuple[str, str]] = set()
        for start in range(0, len(pairs), _ID_CHUNK):
            chunk = pairs[start:start + _ID_CHUNK]
            found.update((row[0], row[1]) for row in self._read(
                "SELECT e.user_id, e.event_id FROM unnest(%s::text[], %s::text[]) "
                "AS v(user_id, event_id) JOIN events e "
                "ON e.user_id = v.user_id AND e.event_id = v.event_id",
                ([u for u, _ in chunk], [i for _, i in chunk])))
        return found

    def unknown_item_ids(self, item_ids: Iterable[str]) -> list[str]:
        ids = list(dict.fromkeys(item_ids))
        known: set[str] = set()
        for start in range(0, len(ids), _ID_CHUNK):
            known.update(row[0] for row in self._read(
                "SELECT item_id FROM items WHERE item_id = ANY(%s)",
                (ids[start:start + _ID_CHUNK],)))
        return [i for i in ids if i not in known]

    def get_items(self, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(item_ids))
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            for row in self._read("SELECT item_id, fields::text FROM items "
                                  "WHERE item_id = ANY(%s)", (ids[start:start + _ID_CHUNK],)):
                out[row[0]] = _record_from("ITEM_ID", row)
        return out

    def counted_event_id(self, event: Interaction) -> str | None:
        rows = self._read(
            "SELECT event_id FROM events WHERE user_id = %(user)s AND (event_id = %(id)s OR "
            "(item_id = %(item)s AND once_per_poll = %(once)s)) "
            "ORDER BY event_id <> %(id)s LIMIT 1",
            {"user": event.user_id, "id": event.event_id, "item": event.item_id,
             "once": once_per_poll(event, self.rules)})
        return rows[0][0] if rows else None

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT user_id, fields::text FROM users WHERE user_id = %s",
                          (user_id,))
        return _record_from("USER_ID", rows[0]) if rows else None

    def catalog_seq(self) -> int:
        return int(self._read("SELECT value FROM catalog_seq")[0][0])

    def items_updated_since(self, seq: int, limit: int = PAGE_SIZE,
                            ) -> tuple[int, dict[str, dict[str, Any]]]:
        rows = self._read(
            "SELECT item_id, fields::text, updated_seq FROM items WHERE updated_seq > %s "
            "ORDER BY updated_seq LIMIT %s", (seq, limit))
        if not rows:
            return seq, {}
        return rows[-1][2], {row[0]: _record_from("ITEM_ID", row[:2]) for row in rows}

    def items(self) -> Iterator[dict[str, Any]]:
        return self._catalog("items", "item_id", "ITEM_ID")

    def users(self) -> Iterator[dict[str, Any]]:
        return self._catalog("users", "user_id", "USER_ID")

    def _catalog(self, table: str, column: str, key: str) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:  # by the primary key (COLLATE "C": byte order, as SQLite sorts)
            where, params = ("", ()) if after is None else (f"WHERE {column} > %s", (after,))
            rows = self._read(f"SELECT {column}, fields::text FROM {table} {where} "
                              f"ORDER BY {column} LIMIT {PAGE_SIZE}", params)
            for row in rows:
                yield _record_from(key, row)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]

    # ------------------------------------------------------------------ bulk import

    def import_bulk(self, interactions: Iterable[Interaction] = (),
                    impressions: Iterable[Impression] = (),
                    items: Iterable[Mapping[str, Any]] = (),
                    users: Iterable[Mapping[str, Any]] = (),
                    mode: ImportMode = "incremental",
                    deletions: Iterable[PollDeletion] = ()) -> ImportCounts:
        """Write datasets in ONE transaction (see :meth:`EventStore.import_bulk`). Events
        go through ``COPY`` into a temporary table, then into ``events`` numbered in
        input order, duplicates of stored (user, id) pairs (or of earlier rows) skipped;
        so are events naming a deleted poll, trimmed as SQLite's are."""
        if mode not in ("incremental", "full"):
            raise EventStoreError(f"unknown import mode {mode!r}; use 'incremental' or 'full'")
        if self.rules is not None:
            interactions = _admitted(interactions, self.rules)
            impressions = _admitted(impressions, self.rules)

        def work(conn: psycopg.Connection) -> ImportCounts:
            # The counter rows first, as every writer takes them: numbering is in commit
            # order, and a full import's deletes cannot interleave with an append.
            base = conn.execute("SELECT value FROM event_seq FOR UPDATE").fetchone()[0]
            conn.execute("SELECT value FROM catalog_seq FOR UPDATE")
            if mode == "full":  # DELETE, not TRUNCATE: readers keep their snapshot
                for table in ("events", "items", "users", "event_only_polls"):
                    conn.execute(f"DELETE FROM {table}")
            new_deletions = _store_deletions(conn, [_pg_deletion_row(d, self.rules)
                                                     for d in deletions])
            # Read under event_seq's row lock, which delete_item takes first: a deletion
            # committed before it is seen here, a later one waits for this import.
            left_out = LeftOut()
            acted, shown = without_deleted(
                {row[0] for row in conn.execute("SELECT item_id FROM deleted_polls")},
                interactions, impressions, left_out)
            conn.execute(
                "CREATE TEMP TABLE import_events (n BIGINT, event_id TEXT, kind TEXT, "
                "user_id TEXT, item_id TEXT, event_type TEXT, event_value FLOAT8, "
                "timestamp BIGINT, impression TEXT, recommendation_id TEXT, "
                "once_per_poll TEXT) ON COMMIT DROP")
            n = 0
            with conn.cursor() as cur, cur.copy("COPY import_events FROM STDIN") as copy:
                for event in acted:
                    n += 1
                    copy.write_row((n, *_postgres_row(_interaction_row(event)),
                                    once_per_poll(event, self.rules)))
                n_interactions = n
                for event in shown:
                    n += 1
                    copy.write_row((n, *_postgres_row(_impression_row(event)), None))
            new = {}
            for kind, low, high in ((_INTERACTION, 0, n_interactions),
                                    (_IMPRESSION, n_interactions, n)):
                new[kind] = conn.execute(
                    "INSERT INTO events (seq, event_id, kind, user_id, item_id, event_type, "
                    "event_value, timestamp, impression, recommendation_id, once_per_poll) "
                    "SELECT %s + n, event_id, kind, user_id, item_id, event_type, "
                    "event_value, timestamp, impression, recommendation_id, once_per_poll "
                    "FROM import_events WHERE n > %s AND n <= %s ORDER BY n "
                    "ON CONFLICT DO NOTHING", (base, low, high)).rowcount
            conn.execute("UPDATE event_seq SET value = %s", (base + n,))
            n_items = _upsert_stamped(
                conn, (_catalog_pg_row("ITEM_ID", r, k) for k, r in enumerate(items, 1)))
            n_users = _upsert_users(
                conn, (_catalog_pg_row("USER_ID", r, k) for k, r in enumerate(users, 1)))
            conn.execute(  # the polls its events name without a record (SQLite's note)
                "INSERT INTO event_only_polls SELECT e.item_id FROM events AS e "
                "WHERE e.seq > %(base)s AND e.kind = 'interaction' AND e.item_id IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM items AS i WHERE i.item_id = e.item_id) "
                "UNION SELECT j.value FROM events AS e, "
                "jsonb_array_elements_text(e.impression::jsonb) AS j(value) "
                "WHERE e.seq > %(base)s AND e.impression IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM items AS i WHERE i.item_id = j.value) "
                "ON CONFLICT DO NOTHING", {"base": base})
            return ImportCounts(new[_INTERACTION], new[_IMPRESSION], n_items, n_users,
                                new_deletions, left_out)

        return self._write(work, "import")


# --------------------------------------------------------------------------- schema


def upgrade(url: str) -> dict[str, int]:
    """Bring the events tables of the database ``url`` names to this code's schema;
    returns every component's version afterwards."""
    with PostgresEventStore(url, upgrade=True) as store:
        return store.schema_versions()


# --------------------------------------------------------------------------- rows


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _postgres_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` unchanged, or :class:`InvalidEvent` for text PostgreSQL cannot store."""
    for value in row:
        if isinstance(value, str) and "\x00" in value:
            raise InvalidEvent(
                f"{value!r:.60} contains a NUL character (\\x00), which PostgreSQL "
                "cannot store; remove it")
    return row


def _catalog_pg_row(key: str, record: Mapping[str, Any], number: int) -> tuple[str, str]:
    ident, text = _catalog_row(key, record, number)
    _postgres_row((ident,))
    if "\\u0000" in text:  # JSON's escape of NUL: jsonb refuses it
        raise InvalidEvent(
            f"{key} {ident!r:.60}: a field contains a NUL character (\\x00), which "
            "PostgreSQL cannot store; remove it")
    return ident, text


def _upsert_stamped(conn: psycopg.Connection, rows: Iterable[tuple[str, str]]) -> int:
    """Upsert poll records, each stamped with the next catalog sequence number (under
    the counter's row lock, held to COMMIT: numbers follow commit order). One
    statement per record, pipelined: a repeated id merges in input order."""
    start = conn.execute("SELECT value FROM catalog_seq FOR UPDATE").fetchone()[0]
    last = [start]

    def stamped() -> Iterator[dict[str, Any]]:
        for item_id, fields in rows:
            last[0] += 1
            yield {"id": item_id, "fields": fields, "seq": last[0]}

    with conn.cursor() as cur:
        cur.executemany(_UPSERT_ITEM, stamped())
        written = max(cur.rowcount, 0)
    if last[0] != start:
        conn.execute("UPDATE catalog_seq SET value = %s", (last[0],))
    return written


def _deleted_among(conn: psycopg.Connection, ids: list[str]) -> set[str]:
    gone: set[str] = set()
    for start in range(0, len(ids), _ID_CHUNK):
        gone.update(row[0] for row in conn.execute(
            "SELECT item_id FROM deleted_polls WHERE item_id = ANY(%s)",
            (ids[start:start + _ID_CHUNK],)))
    return gone


def _refuse_deleted(conn: psycopg.Connection, polls: list[str],
                    fix: str | None = None) -> None:
    """:class:`DeletedPolls` when any of ``polls`` was deleted (in the write's
    transaction, after the lock a deletion takes)."""
    gone = _deleted_among(conn, polls) if polls else set()
    if gone:
        named = [p for p in polls if p in gone]
        raise DeletedPolls(named) if fix is None else DeletedPolls(named, fix)


def _pg_deletion_row(deletion: PollDeletion, rules: EventRules | None = None,
                     ) -> tuple[str, str | None, str, int]:
    return _postgres_row(_deletion_row(deletion, rules))  # type: ignore[return-value]


def _store_deletions(conn: psycopg.Connection,
                     rows: list[tuple[str, str | None, str, int]]) -> int:
    """SQLite's _store_deletions: tombstones stored, stamped with catalog sequence
    numbers (under the counter's row lock), their polls' catalog rows dropped."""
    if not rows:
        return 0
    count = "SELECT count(*) FROM deleted_polls"
    before = conn.execute(count).fetchone()[0]
    start = conn.execute("SELECT value FROM catalog_seq FOR UPDATE").fetchone()[0]
    with conn.cursor() as cur:
        cur.executemany(_IMPORT_DELETION,
                        ((*row, start + n) for n, row in enumerate(rows, 1)))
    ids = [row[0] for row in rows]
    for at in range(0, len(ids), _ID_CHUNK):
        conn.execute("DELETE FROM items WHERE item_id = ANY(%s)", (ids[at:at + _ID_CHUNK],))
    conn.execute("UPDATE catalog_seq SET value = %s", (start + len(rows),))
    return conn.execute(count).fetchone()[0] - before


def _upsert_users(conn: psycopg.Connection, rows: Iterable[tuple[str, str]]) -> int:
    with conn.cursor() as cur:
        cur.executemany(_UPSERT_USER, ({"id": u, "fields": f} for u, f in rows))
        return max(cur.rowcount, 0)
