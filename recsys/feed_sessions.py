"""Feed sessions: stable ``first``/``after`` paging with opaque, signed cursors.

Personalize has no pagination token; callers page and de-duplicate themselves, and users
complain of the same polls again and again. Here a feed session remembers every poll it
has placed, in order. Page k is a slice of that list; the list grows only at its end, by
mixing polls that are not in it yet. So pages never repeat or skip a poll, and asking
again with the same cursor returns the same page.

The list lives in a store shared by every worker process of a host (SQLite) or of many
hosts (Redis); two workers extending one session at once settle on whichever wrote first.

A cursor is ``base64url(json)`` + ``.`` + an HMAC-SHA256 signature over it: it names the
session, the user and the position, and expires with the session. Each poll placed has
one (the position after it), the same text whenever that position is signed again.

A page costs the store at most one read and one write: a new session is created together
with its first page (:meth:`FeedSessionStore.create` with ``items``; nobody else knows its
id yet, so nothing can race it), and a page after a cursor reads the session once
(:meth:`FeedSessionStore.snapshot`) and, when it needs more polls, appends them in one
conditional write. The write is committed before the page is returned, so the next page
of the same session can be served by any other worker.
"""

from __future__ import annotations

import base64
import logging
import contextlib
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from math import isfinite
from pathlib import Path
from typing import Any, Protocol

import orjson

from recsys.errors import HunchError
from recsys.mixer import FeedItem
from recsys.sqlite_wal import enable_wal
from recsys.store_db import sqlite_write

_log = logging.getLogger(__name__)

DEFAULT_SESSION_TTL_SECONDS = 30 * 60  # a scrolling session; a new app open starts anew
SWEEP_SECONDS = 60.0  # how often a store deletes expired sessions
# Expired sessions deleted per write transaction by the sweep: ~100 items each, so a
# batch holds the write lock for ~15 ms rather than a minute's worth of sessions.
SWEEP_BATCH_SESSIONS = 100
# And between batches the sweep lets go of the lock for longer than SQLite's busy
# handler sleeps at most (100 ms), so a feed request waiting for it wakes while it is
# free. Re-taking it at once starved waiters: sweeping 6,667 expired sessions (1.1 s)
# held a writer in another process for 2.1 s, and a gateway restarted after a quiet
# hour served its first 10 s of feeds with a p95 of 2.9 s.
SWEEP_PAUSE_SECONDS = 0.12
CHECKPOINT_SECONDS = 2.0  # how often the sessions WAL is folded into the database
SCHEMA_VERSION = 2  # the SQLite store's layout (PRAGMA user_version); see _migrate


class InvalidCursor(HunchError):
    """The ``after`` cursor was altered, belongs to someone else, is not ours, or points
    outside its session."""


MALFORMED_CURSOR = "the cursor is malformed; ask for the feed again without `after`"


class ExpiredCursor(HunchError):
    """The ``after`` cursor's feed session has expired; start again without a cursor."""


@dataclass(frozen=True)
class Cursor:
    session_id: str
    user_id: str
    position: int  # items before the next page
    expires_at: float


class CursorSigner:
    """Signs and verifies cursors with a server secret (HMAC-SHA256)."""

    def __init__(self, secret: str | bytes):
        if not secret:
            raise ValueError("a cursor secret is required")
        self._key = secret.encode() if isinstance(secret, str) else secret

    def encode(self, cursor: Cursor) -> str:
        return self.encode_run(cursor.session_id, cursor.user_id, [cursor.position],
                               cursor.expires_at)[0]

    def encode_run(self, session_id: str, user_id: str, positions: Sequence[int],
                   expires_at: float) -> list[str]:
        """Cursors of one session at several positions (a page's edges, one each).

        Only the position differs between them, so the JSON around it is built once;
        the text is exactly ``json.dumps`` of the cursor's fields in order, so a position
        gets the same cursor however it is signed.
        """
        head = '{"s":%s,"u":%s,"p":' % (json.dumps(session_id), json.dumps(user_id))
        tail = ',"e":%s}' % json.dumps(round(expires_at, 3))
        cursors = []
        for position in positions:
            payload = base64.urlsafe_b64encode(
                f"{head}{int(position)}{tail}".encode()).rstrip(b"=")
            cursors.append((payload + b"." + self._sign(payload)).decode())
        return cursors

    def _sign(self, payload: bytes) -> bytes:
        return base64.urlsafe_b64encode(
            hmac.digest(self._key, payload, hashlib.sha256)).rstrip(b"=")

    def decode(self, text: str, user_id: str, now: float | None = None) -> Cursor:
        payload, dot, signature = text.encode().partition(b".")
        if not dot:
            raise InvalidCursor("the cursor is malformed; pass a cursor from a previous page")
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise InvalidCursor("the cursor was altered; pass it back exactly as received")
        try:
            raw = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
            cursor = Cursor(raw["s"], raw["u"], raw["p"], raw["e"])
            # Only what encode_run writes: anyone who knows a secret (the development
            # default is public) can sign any JSON, and a coercing int() / str() let a
            # "3", 2.5, true or null through as a position or an id.
            well_formed = (isinstance(cursor.session_id, str)
                           and isinstance(cursor.user_id, str)
                           and type(cursor.position) is int  # its range: FeedService.page
                           and type(cursor.expires_at) in (int, float)
                           and isfinite(cursor.expires_at))  # NaN would never expire
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise InvalidCursor(MALFORMED_CURSOR) from exc
        if not well_formed:
            raise InvalidCursor(MALFORMED_CURSOR)
        if cursor.user_id != user_id:
            raise InvalidCursor("the cursor belongs to another user's feed")
        if (now if now is not None else time.time()) > cursor.expires_at:
            raise ExpiredCursor("the feed session expired; ask for the feed without a cursor")
        return cursor


@dataclass(frozen=True)
class SessionSnapshot:
    """A session as one read saw it: when it expires and every poll placed, in order."""

    expires_at: float
    items: list[FeedItem] = field(default_factory=list)
    # Whose feed it is: a cursor naming another user's session is refused even when
    # its own user id is the caller's (a forged cursor needs only the secret).
    user_id: str | None = None


class FeedSessionStore(Protocol):
    """Where feed sessions live, shared by every worker that serves the feed."""

    def create(self, user_id: str, ttl_seconds: float,
               items: Sequence[FeedItem] = ()) -> tuple[str, float]:
        """Open a session holding ``items`` (its first page), in one write."""

    def snapshot(self, session_id: str) -> SessionSnapshot | None:
        """Expiry and placed polls in one read; None when the session is unknown."""

    def expires_at(self, session_id: str) -> float | None: ...

    def items(self, session_id: str, start: int = 0, limit: int | None = None) -> list[FeedItem]: ...

    def placed_ids(self, session_id: str) -> set[str]: ...

    def extend(self, session_id: str, at: int, items: Sequence[FeedItem]) -> bool:
        """Append ``items`` at position ``at`` if the session holds exactly ``at`` items;
        returns False when another worker extended it first."""


_NO_LOCK = contextlib.nullcontext()


class SQLiteFeedSessionStore:
    """Feed sessions in a SQLite file shared by the worker processes of one host."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._swept_at = 0.0
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                     isolation_level=None)
        enable_wal(self._conn)
        self._conn.execute("PRAGMA synchronous=NORMAL")  # sessions are soft state
        # Checkpoints (the only fsyncs at NORMAL) and the sweep of expired sessions run
        # on a thread of their own, not inside whichever feed request comes along.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = threading.Thread(target=self._checkpoint_forever,
                                              name="sessions-checkpoint", daemon=True)
        self._closed = threading.Event()
        self._migrate()

    def _migrate(self) -> None:
        """Create the tables, or replace those of an older layout (sessions are soft
        state: sessions open at an upgrade end, and their clients start a new feed)."""
        # One process migrates (the write lock up front); the others then see it done.
        with sqlite_write(self._conn, self._lock):
            (version,) = self._conn.execute("PRAGMA user_version").fetchone()
            if version < SCHEMA_VERSION:
                # Layout 1 kept a row per placed poll: sweeping a session deleted ~100
                # rows and rewrote every leaf page they sat on, which (with the WAL
                # and checkpoint traffic that follows) put p99 at 426 ms for a feed
                # served while 8,000 expired sessions were swept.
                self._conn.execute("DROP TABLE IF EXISTS feed_session_items")
                self._conn.execute("DROP TABLE IF EXISTS feed_sessions")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS feed_sessions ("
                "session_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, "
                "created_at REAL NOT NULL, expires_at REAL NOT NULL, "
                "placed INTEGER NOT NULL)")
            # One row per write (a first page, or an extension): the items placed,
            # as JSON objects joined by commas (see _item_json).
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS feed_session_pages ("
                "session_id TEXT NOT NULL, position INTEGER NOT NULL, "
                "items BLOB NOT NULL, PRIMARY KEY (session_id, position))")
            self._conn.execute("CREATE INDEX IF NOT EXISTS feed_sessions_expiry "
                               "ON feed_sessions (expires_at)")
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _checkpoint_forever(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            while not self._closed.wait(CHECKPOINT_SECONDS):
                try:
                    if time.time() - self._swept_at > SWEEP_SECONDS:
                        self.sweep(conn)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:  # busy now; the next round catches up
                    pass
        finally:
            conn.close()

    def sweep(self, conn: sqlite3.Connection | None = None) -> int:
        """Delete expired sessions, a batch per transaction; returns how many."""
        conn = conn or self._conn
        now = self._swept_at = time.time()
        swept = 0
        while True:
            with sqlite_write(conn, self._lock if conn is self._conn else _NO_LOCK):
                ids = [r[0] for r in conn.execute(
                    "SELECT session_id FROM feed_sessions WHERE expires_at < ? LIMIT ?",
                    (now, SWEEP_BATCH_SESSIONS))]
                marks = ",".join("?" * len(ids))
                conn.execute(f"DELETE FROM feed_session_pages WHERE session_id IN ({marks})",
                             ids)
                conn.execute(f"DELETE FROM feed_sessions WHERE session_id IN ({marks})", ids)
            swept += len(ids)
            if len(ids) < SWEEP_BATCH_SESSIONS:
                return swept
            time.sleep(SWEEP_PAUSE_SECONDS)

    def create(self, user_id: str, ttl_seconds: float,
               items: Sequence[FeedItem] = ()) -> tuple[str, float]:
        now = time.time()
        session_id = uuid.uuid4().hex
        expires = now + ttl_seconds
        if not self._checkpointer.is_alive() and not self._closed.is_set():
            with self._lock:
                if not self._checkpointer.is_alive():
                    self._checkpointer.start()
        with sqlite_write(self._conn, self._lock):
            self._conn.execute(
                "INSERT INTO feed_sessions VALUES (?, ?, ?, ?, ?)",
                (session_id, user_id, now, expires, len(items)))
            self._insert_page(session_id, 0, items)
        return session_id, expires

    def snapshot(self, session_id: str) -> SessionSnapshot | None:
        with self._lock:
            # One statement, so expiry and items come from one consistent read.
            rows = self._conn.execute(
                "SELECT s.expires_at, p.items, s.user_id FROM feed_sessions AS s "
                "LEFT JOIN feed_session_pages AS p ON p.session_id = s.session_id "
                "WHERE s.session_id = ? ORDER BY p.position", (session_id,),
            ).fetchall()
        if not rows:
            return None
        pages = [row[1] for row in rows if row[1] is not None]  # LEFT JOIN: none yet
        return SessionSnapshot(rows[0][0], decode_session_items(pages) if pages else [],
                               rows[0][2])

    def _insert_page(self, session_id: str, at: int, items: Sequence[FeedItem]) -> None:
        if items:
            self._conn.execute("INSERT INTO feed_session_pages VALUES (?, ?, ?)",
                               (session_id, at, b",".join(map(_item_json, items))))

    def expires_at(self, session_id: str) -> float | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT expires_at FROM feed_sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        return row[0] if row else None

    def items(self, session_id: str, start: int = 0, limit: int | None = None) -> list[FeedItem]:
        snapshot = self.snapshot(session_id)
        placed = snapshot.items if snapshot is not None else []
        return placed[start:None if limit is None else start + limit]

    def placed_ids(self, session_id: str) -> set[str]:
        return {it.item_id for it in self.items(session_id)}

    def extend(self, session_id: str, at: int, items: Sequence[FeedItem]) -> bool:
        with sqlite_write(self._conn, self._lock):
            # First writer wins: only a session still holding exactly ``at`` grows.
            moved = self._conn.execute(
                "UPDATE feed_sessions SET placed = placed + ? "
                "WHERE session_id = ? AND placed = ?", (len(items), session_id, at),
            ).rowcount
            if not moved:
                self._conn.execute("ROLLBACK")
                return False
            self._insert_page(session_id, at, items)
            return True

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._conn.close()


class InMemoryFeedSessionStore:
    """Feed sessions of a single process (tests, notebooks)."""

    def __init__(self) -> None:
        self._sessions: dict[str, tuple[str, float, list[FeedItem]]] = {}
        self._lock = threading.Lock()

    def create(self, user_id: str, ttl_seconds: float,
               items: Sequence[FeedItem] = ()) -> tuple[str, float]:
        session_id = uuid.uuid4().hex
        expires = time.time() + ttl_seconds
        with self._lock:
            self._sessions[session_id] = (user_id, expires, list(items))
        return session_id, expires

    def snapshot(self, session_id: str) -> SessionSnapshot | None:
        entry = self._sessions.get(session_id)
        return SessionSnapshot(entry[1], list(entry[2]), entry[0]) if entry else None

    def expires_at(self, session_id: str) -> float | None:
        entry = self._sessions.get(session_id)
        return entry[1] if entry else None

    def items(self, session_id: str, start: int = 0, limit: int | None = None) -> list[FeedItem]:
        placed = self._sessions[session_id][2]
        end = None if limit is None else start + limit
        return list(placed[start:end])

    def placed_ids(self, session_id: str) -> set[str]:
        return {it.item_id for it in self._sessions[session_id][2]}

    def extend(self, session_id: str, at: int, items: Sequence[FeedItem]) -> bool:
        with self._lock:
            placed = self._sessions[session_id][2]
            if len(placed) != at:
                return False
            placed.extend(items)
            return True


# A session's expiry and every item placed, in one consistent read (a script is atomic):
# nil when the session is gone. One command where MULTI/HGET/LRANGE/EXEC were four to
# build and parse (a continued page's read: ~130 -> ~90 us of a worker's CPU).
_REDIS_SNAPSHOT = """
local meta = redis.call('HMGET', KEYS[1], 'expires_at', 'user')
if not meta[1] then return false end
return {meta[1], redis.call('LRANGE', KEYS[2], 0, -1), meta[2] or false}
"""
# Appends only when the session exists and its list still holds exactly ARGV[1] items
# (first writer wins); the list then expires with the session's meta key. Atomic inside
# Redis, and one round trip: the time to live is read in the script, not asked first.
_REDIS_EXTEND = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""


# A session call takes ~1 ms; a quarter of a second means Redis is in trouble (a hung
# Redis held each worker's one feed thread a whole timeout per page: helper-66).
REDIS_SESSION_TIMEOUT_SECONDS = 0.25
# After a failed call, new sessions are opened on the host for this long instead of each
# first page paying a timeout ...
REDIS_RETRY_SECONDS = 5.0
# ... and cursors of Redis sessions wait this long before trying Redis again: one slow
# call expires scrolling users' cursors for at most this (helper-65), and a hung Redis
# costs a worker one timeout a second, not one a page (helper-66).
REDIS_READ_RETRY_SECONDS = 1.0


class RedisFeedSessionStore:
    """Feed sessions in Redis, shared by the gateways of several hosts.

    Keys: ``<prefix>:<session>:meta`` (a hash: user, expires_at) and
    ``<prefix>:<session>:items`` (a list of JSON items); both expire with the session.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "hunch:feed",
                 timeout_seconds: float = REDIS_SESSION_TIMEOUT_SECONDS):
        import redis

        # Bounded waits: a Redis that hangs must fail a call (and the feed fall back,
        # see FallbackFeedSessionStore), not hold the page forever.
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_seconds,
                                           socket_connect_timeout=timeout_seconds)
        self.prefix = prefix
        self._extend_script = self._redis.register_script(_REDIS_EXTEND)
        self._snapshot_script = self._redis.register_script(_REDIS_SNAPSHOT)

    def _keys(self, session_id: str) -> tuple[str, str]:
        return f"{self.prefix}:{session_id}:meta", f"{self.prefix}:{session_id}:items"

    def create(self, user_id: str, ttl_seconds: float,
               items: Sequence[FeedItem] = ()) -> tuple[str, float]:
        session_id = uuid.uuid4().hex
        expires = time.time() + ttl_seconds
        meta, listed = self._keys(session_id)
        pipe = self._redis.pipeline()  # MULTI/EXEC: the session appears whole or not at all
        pipe.hset(meta, mapping={"user": user_id, "expires_at": repr(expires)})
        pipe.pexpire(meta, int(ttl_seconds * 1000))
        if items:
            pipe.rpush(listed, *(_item_json(it) for it in items))
            pipe.pexpire(listed, int(ttl_seconds * 1000))
        pipe.execute()
        return session_id, expires

    def snapshot(self, session_id: str) -> SessionSnapshot | None:
        found = self._snapshot_script(keys=list(self._keys(session_id)))
        if found is None:
            return None
        expires, raw, user = found
        return SessionSnapshot(float(expires), decode_session_items(raw),
                               user.decode() if isinstance(user, bytes) else user or None)

    def expires_at(self, session_id: str) -> float | None:
        value = self._redis.hget(self._keys(session_id)[0], "expires_at")
        return float(value) if value is not None else None

    def items(self, session_id: str, start: int = 0, limit: int | None = None) -> list[FeedItem]:
        end = -1 if limit is None else start + limit - 1
        return decode_session_items(self._redis.lrange(self._keys(session_id)[1], start, end))

    def placed_ids(self, session_id: str) -> set[str]:
        return {it.item_id for it in self.items(session_id)}

    def extend(self, session_id: str, at: int, items: Sequence[FeedItem]) -> bool:
        payload = [_item_json(it) for it in items]
        return bool(self._extend_script(keys=list(self._keys(session_id)),
                                        args=[at, *payload]))

    def close(self) -> None:
        self._redis.close()


# One encoder for every item: json.dumps with any keyword builds a new JSONEncoder per
# call (20 items: 90 -> 66 us of CPU per page written).
_encode_item = json.JSONEncoder(separators=(",", ":")).encode


def _item_json(item: FeedItem) -> bytes:
    """One item's JSON. orjson writes 20 items in 9 us of CPU against 106 us; the same
    JSON, except that it writes a non-finite score as null where the standard library
    writes NaN / Infinity, and refuses types it does not know: those items are written
    as before, so what a page reads back never changes."""
    if isfinite(item.score):
        try:
            return orjson.dumps(item.__dict__)
        except TypeError:  # orjson.JSONEncodeError: e.g. a numpy score
            pass
    return _encode_item(item.__dict__).encode()  # ASCII: non-ASCII is escaped


def decode_session_items(raw: Sequence[bytes]) -> list[FeedItem]:
    """A session's items (Redis: one per list entry; SQLite: a page's, comma-joined),
    decoded as one JSON array: a continued page reads every
    item placed so far (80 on a fifth page): decoding 80 took 345 us of CPU with one
    ``json.loads`` per item, 155 us as one array, 106 us with orjson (which refuses the
    NaN / Infinity an item may hold, see :func:`_item_json`: read as before)."""
    array = b"[" + b",".join(raw) + b"]"
    try:
        decoded = orjson.loads(array)
    except orjson.JSONDecodeError:
        decoded = json.loads(array)
    return [FeedItem(**fields) for fields in decoded]


class FallbackFeedSessionStore:
    """Sessions in a shared store (Redis), and in this host's own (SQLite) while the
    shared one fails, so that an outage of Redis does not fail every feed.

    Before, every feed page of every host answered INTERNAL_SERVER_ERROR while Redis was
    down. Now a new feed opens its session in the fallback (its id marked with
    :data:`LOCAL`, which no uuid hex holds), a cursor of such a session is read there on
    any worker of the host, and a cursor of a shared session that cannot be read is
    expired (the client starts its feed again, as documented for CURSOR_EXPIRED). Once
    Redis answers again new sessions go back to it; local ones live out their time.
    ``degraded`` says whether the last call to the shared store failed (readiness and
    the feed's ``extensions.degraded`` read it)."""

    LOCAL = "l"

    def __init__(self, shared: FeedSessionStore, local: FeedSessionStore,
                 errors: tuple[type[BaseException], ...],
                 on_failure: Callable[[BaseException], None] | None = None,
                 retry_seconds: float = REDIS_RETRY_SECONDS,
                 read_retry_seconds: float = REDIS_READ_RETRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.shared, self.local = shared, local
        self._errors = errors
        self._on_failure = on_failure
        self._retry_seconds = retry_seconds
        self._read_retry_seconds = read_retry_seconds
        self._clock = clock
        self._failed_at: float | None = None
        self.last_error: str | None = None

    @property
    def degraded(self) -> bool:
        return self._failed_at is not None

    def _call(self, method: str, *args: Any, new_session: bool = False
              ) -> tuple[bool, Any]:
        """(True, the shared store's answer), or (False, None) when it failed or is left
        alone after a failure: retry_seconds for new sessions, read_retry_seconds for the
        reads and extensions of shared sessions (a cursor has nowhere else to go)."""
        failed_at = self._failed_at
        pause = self._retry_seconds if new_session else self._read_retry_seconds
        if failed_at is not None and self._clock() - failed_at < pause:
            return False, None
        try:
            answer = getattr(self.shared, method)(*args)
        except self._errors as exc:
            self._failed_at = self._clock()
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self._on_failure is not None:
                self._on_failure(exc)
            return False, None
        if failed_at is not None:
            _log.info("feed sessions are in the shared store again")
        self._failed_at = None
        self.last_error = None
        return True, answer

    def create(self, user_id: str, ttl_seconds: float,
               items: Sequence[FeedItem] = ()) -> tuple[str, float]:
        ok, created = self._call("create", user_id, ttl_seconds, items, new_session=True)
        if ok:
            return created
        session_id, expires = self.local.create(user_id, ttl_seconds, items)
        return self.LOCAL + session_id, expires

    def _route(self, method: str, session_id: str, *args: Any, missing: Any) -> Any:
        if session_id.startswith(self.LOCAL):
            return getattr(self.local, method)(session_id[len(self.LOCAL):], *args)
        ok, answer = self._call(method, session_id, *args)
        return answer if ok else missing

    def snapshot(self, session_id: str) -> SessionSnapshot | None:
        return self._route("snapshot", session_id, missing=None)  # None: expired

    def expires_at(self, session_id: str) -> float | None:
        return self._route("expires_at", session_id, missing=None)

    def items(self, session_id: str, start: int = 0, limit: int | None = None) -> list[FeedItem]:
        return self._route("items", session_id, start, limit, missing=[])

    def placed_ids(self, session_id: str) -> set[str]:
        return self._route("placed_ids", session_id, missing=set())

    def extend(self, session_id: str, at: int, items: Sequence[FeedItem]) -> bool:
        # False: not written; the page reads the session again, and finds it expired.
        return self._route("extend", session_id, at, items, missing=False)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.shared.close()
        self.local.close()
