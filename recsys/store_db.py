"""What the named-filter and promotion stores share on PostgreSQL: the store URL, a
connection pool, typed errors for an unreachable server, and versioned schemas.

``HUNCH_STORE_URL`` selects the store: a plain path or ``sqlite:///path`` is the SQLite
file of today (the embedded default, one host), ``postgresql://...`` a PostgreSQL
database that several hosts share.

Schema versions live in ``hunch_schema(component, version)``, one row per component
("events", "filters", "promotions"). Each component's migrations run in one transaction
holding ``pg_advisory_xact_lock(hashtext('hunch_schema'))``, so hosts upgrading at once
apply each migration exactly once. On PostgreSQL a store does not migrate when it opens:
an older schema raises :class:`SchemaOutdated` naming ``hunch db upgrade`` (several hosts
share the database; changing it is a deliberate deploy step, not a side effect of
whichever host starts first). SQLite stores keep creating their tables on open.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from recsys.errors import HunchError

log = logging.getLogger("recsys.store_db")

# A few connections per store: these tables see admin writes and a read per worker per
# second, never a burst of requests.
POOL_MAX_CONNECTIONS = 4
# How long an operation waits for a connection before the store counts as unreachable.
# The feed reads these stores at most once a second (cached), so during an outage one
# request a second waits this long and the others serve what was read before.
POOL_WAIT_SECONDS = 2.0
# The pool stops its own reconnection attempts (backing off 1, 2, 4 s) after this long;
# the next operation then starts a fresh attempt. This bounds how long after the server
# is back a store keeps failing, whatever the length of the outage.
POOL_RECONNECT_SECONDS = 5.0
# A server that does not answer (a dropped host, not a refused port) fails this fast.
CONNECT_TIMEOUT_SECONDS = 3
# A pooled connection unused for this long is checked (one empty round trip) before use.
CHECK_IDLE_SECONDS = 1.0

SCHEMA_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('hunch_schema'))"
SCHEMA_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS hunch_schema (component TEXT PRIMARY KEY, version INT NOT NULL)")
# One change counter per component, bumped in the same transaction as every write: a
# reader on any host polls one row to learn that it must re-read (see version()).
CHANGES_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS hunch_changes (component TEXT PRIMARY KEY, seq BIGINT NOT NULL)")
BUMP_CHANGES_SQL = (
    "INSERT INTO hunch_changes (component, seq) VALUES ({p}, 1) "
    "ON CONFLICT (component) DO UPDATE SET seq = hunch_changes.seq + 1")


class StoreUnavailable(HunchError):
    """The shared store (PostgreSQL) cannot be reached; retry later, nothing was changed
    unless the server committed before the connection dropped."""

    retryable = True


class SchemaOutdated(HunchError):
    """The database's schema is older than this code; run ``hunch db upgrade``."""


class InvalidStoreUrl(HunchError):
    """HUNCH_STORE_URL is neither a SQLite path/URL nor a postgresql:// URL."""


def store_location(url_or_path: str | Path) -> tuple[str, str | Path]:
    """``("sqlite", Path)`` or ``("postgresql", url)`` for a store URL or a plain path.

    ``sqlite:///abs/file.sqlite3`` is the file ``/abs/file.sqlite3`` (a file URL's path);
    ``sqlite:relative.sqlite3`` or a plain path is taken as given.
    """
    if isinstance(url_or_path, Path):
        return "sqlite", url_or_path
    text = str(url_or_path).strip()
    if not text:
        raise InvalidStoreUrl("the store URL is empty; give a SQLite path or postgresql:// URL")
    scheme = text.split(":", 1)[0].lower() if "://" in text or text.startswith("sqlite:") else ""
    if scheme in ("postgresql", "postgres"):
        return "postgresql", text
    if scheme == "sqlite":
        parts = urlsplit(text)
        path = unquote(parts.path)
        if not path:
            raise InvalidStoreUrl(f"the SQLite store URL {text!r} names no file")
        return "sqlite", Path(path)
    if scheme:
        raise InvalidStoreUrl(
            f"unsupported store URL scheme {scheme!r} in {text!r}; use sqlite:///path "
            "(or a plain path) or postgresql://user@host/database")
    return "sqlite", Path(text)


def open_pool(url: str, name: str):
    """A psycopg connection pool in autocommit mode (transactions are explicit); it opens
    without waiting, so a store can be built while the server is down."""
    from psycopg_pool import ConnectionPool

    idle = _CheckWhenIdle()
    return ConnectionPool(
        url, name=name, min_size=1, max_size=POOL_MAX_CONNECTIONS, open=True,
        timeout=POOL_WAIT_SECONDS, reconnect_timeout=POOL_RECONNECT_SECONDS,
        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
        check=idle.check)


class _CheckWhenIdle:
    """The pool's checkout check: a connection the server dropped (a restart) is replaced
    instead of failing the next operation. The check is an empty round trip, so it runs
    only on connections idle for ``CHECK_IDLE_SECONDS``: a busy gateway's feed page would
    otherwise pay one extra round trip per query, and a restart takes longer than that
    (a query that fails on a dropped connection discards it and is retryable anyway).

    Idle counts from the connection's last checkout, which is never later than its last
    return, so no connection idle that long goes unchecked. Not from a ``reset`` callback
    at return: with one, the pool hands every returned connection to a worker thread, a
    thread switch per query (about 0.1 ms of wall and CPU each, more under load)."""

    def __init__(self) -> None:
        self._checked_out_at: dict[int, float] = {}  # id(connection) -> monotonic time

    def check(self, conn) -> None:
        now = time.monotonic()
        at = self._checked_out_at.get(id(conn))
        self._checked_out_at[id(conn)] = now
        if at is not None and now - at < CHECK_IDLE_SECONDS:
            return
        from psycopg_pool import ConnectionPool

        ConnectionPool.check_connection(conn)


@contextlib.contextmanager
def sqlite_write(conn, lock) -> Iterator[None]:
    """One SQLite write transaction (``BEGIN IMMEDIATE``: the write lock up front, so a
    read-then-write cannot be overtaken by another process), committed when the block
    ends, rolled back on any exception."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            if conn.in_transaction:  # the block may have rolled back itself
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


@contextlib.contextmanager
def unavailable_as_typed(what: str) -> Iterator[None]:
    """Turn psycopg's connection failures into :class:`StoreUnavailable`."""
    import psycopg
    from psycopg_pool import PoolClosed

    try:
        yield
    except PoolClosed:
        raise  # used after close(): a bug, not an outage
    except psycopg.OperationalError as exc:  # refused, dropped, timed out, shut down
        raise StoreUnavailable(
            f"the PostgreSQL store is unreachable while {what} ({_first_line(exc)}); "
            "retry when it is back") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def schema_version(conn, component: str) -> int:
    """The component's applied schema version; 0 when never upgraded."""
    if conn.execute("SELECT to_regclass('hunch_schema')").fetchone()[0] is None:
        return 0
    row = conn.execute("SELECT version FROM hunch_schema WHERE component = %s",
                       (component,)).fetchone()
    return 0 if row is None else int(row[0])


def upgrade_component(pool, component: str, migrations: Sequence[str | Callable]) -> int:
    """Apply the component's pending migrations (``migrations[i]`` takes it to version
    i + 1) in one transaction under the schema lock; returns the version now applied."""
    with unavailable_as_typed(f"upgrading the {component} schema"), pool.connection() as conn:
        with conn.transaction():
            conn.execute(SCHEMA_LOCK_SQL)
            conn.execute(SCHEMA_TABLE_SQL)
            current = schema_version(conn, component)
            for step in migrations[current:]:
                if callable(step):
                    step(conn)
                else:
                    conn.execute(step)
            target = max(current, len(migrations))
            if target != current:
                conn.execute(
                    "INSERT INTO hunch_schema (component, version) VALUES (%s, %s) "
                    "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
                    (component, target))
                log.info("upgraded the %s schema from version %d to %d",
                         component, current, target)
    return target


def check_schema(pool, component: str, expected: int) -> None:
    """Raise :class:`SchemaOutdated` when the database is behind this code. A newer
    schema is accepted: migrations only add, so code one release behind keeps working
    during a rolling deploy (one exception, events schema 2: see postgres_events.py's
    MIGRATIONS and README's `hunch db upgrade`)."""
    with unavailable_as_typed(f"reading the {component} schema version"), \
            pool.connection() as conn:
        found = schema_version(conn, component)
    if found < expected:
        raise SchemaOutdated(
            f"the {component} tables in the PostgreSQL store are at schema version {found}, "
            f"this code needs {expected}: run `hunch db upgrade` (HUNCH_STORE_URL)")


class SchemaGate:
    """Checks a PostgreSQL store's schema once: at open when the server answers,
    otherwise at the first operation after it is back (a gateway may start during an
    outage and must recover by itself)."""

    def __init__(self, pool, component: str, expected: int):
        self._pool, self._component, self._expected = pool, component, expected
        self._checked = False

    def open(self, upgrade: Callable[[], object] | None = None) -> None:
        """At open: ``upgrade()`` first when given (``hunch db upgrade``, tests), then
        the check; an unreachable server postpones both to the first operation."""
        try:
            if upgrade is not None:
                upgrade()
            self.check()
        except StoreUnavailable:
            log.warning("the PostgreSQL %s store is unreachable at open; its schema is "
                        "checked at the first operation", self._component)

    def check(self) -> None:
        if not self._checked:
            check_schema(self._pool, self._component, self._expected)
            self._checked = True
