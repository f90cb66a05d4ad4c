"""Named filters, kept durably like Personalize's CreateFilter resources.

Internal tools create a filter once by name ("exclude-voted") and requests refer to it
by that name. As in Personalize, a filter cannot be edited: creating a name again with
the same expression is a no-op (so deploy scripts can be re-run), with a different one
an error; delete and re-create to change it. Every expression is compiled before it is
stored, so a stored filter always compiles.

Two stores keep them: :class:`FilterStore` in SQLite (the embedded default) and
``PostgresFilterStore`` (recsys/filters/pg_store.py) that several hosts share;
:func:`open_filter_store` picks one from ``HUNCH_STORE_URL``. Both share the logic here
(:class:`FilterStoreBase`) and differ only in how rows are read and written.

The SQLite file is shared with the event store (recsys/events.py); this module keeps to
its own ``filters`` table and its own connection. WAL with synchronous=FULL makes an
acknowledged create or delete survive a crash or power loss.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from recsys.errors import HunchError
from recsys.filters.compiler import CompiledFilter, compile_filter
from recsys.filters.parser import InvalidFilterExpression
from recsys.schemas import DatasetSchema
from recsys.sqlite_wal import enable_wal
from recsys.store_db import (BUMP_CHANGES_SQL, CHANGES_TABLE_SQL, StoreUnavailable, sqlite_write,
                             store_location)

# Personalize's filter Name shape (botocore): 1-63 characters, letters, digits, - and _.
_FILTER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]{0,62}")
_BUSY_TIMEOUT_SECONDS = 10.0  # other writers (the event store) hold the file briefly

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS filters (
    name        TEXT PRIMARY KEY,
    expression  TEXT NOT NULL,
    created_at  REAL NOT NULL
)
"""
CHANGES_COMPONENT = "filters"  # its row in hunch_changes (see version())


class FilterAlreadyExists(HunchError):
    """A filter of that name exists with another expression; filters cannot be edited."""


class UnknownFilter(HunchError):
    """No filter has that name."""


class InvalidFilterName(HunchError):
    """A filter name breaks Personalize's naming rule."""


@dataclass(frozen=True, slots=True)
class NamedFilter:
    """A stored filter: its name, expression text, creation time and compiled form."""

    name: str
    expression: str
    created_at: float
    compiled: CompiledFilter


# Filter names remembered as missing (a feed may name any filter): at most about this many.
MAX_REMEMBERED_MISSING = 1_024


class FilterStoreProtocol(Protocol):
    """What gateway/ and recsys/ use of a named-filter store."""

    def create(self, name: str, expression: str) -> NamedFilter: ...
    def get(self, name: str, *, max_age_seconds: float | None = None) -> NamedFilter: ...
    def list(self) -> list[NamedFilter]: ...
    def delete(self, name: str) -> None: ...
    def version(self) -> int: ...
    def upgrade(self) -> None: ...
    def close(self) -> None: ...


class FilterStoreBase:
    """The semantics of every filter store; subclasses provide the row operations
    (``_insert_if_absent``, ``_row``, ``_rows``, ``_delete_row``, ``_version``)."""

    def __init__(self, items_schema: DatasetSchema | None, users_schema: DatasetSchema | None):
        self._schemas = {"items_schema": items_schema, "users_schema": users_schema}
        self._compiled: dict[tuple[str, str], CompiledFilter] = {}
        self._read_at: dict[str, tuple[float, NamedFilter | None]] = {}  # see get(max_age_seconds)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError

    def upgrade(self) -> None:
        """Apply pending schema migrations (see recsys/store_db.py)."""
        raise NotImplementedError

    # -------------------------------------------------------------- operations

    def create(self, name: str, expression: str) -> NamedFilter:
        """Store a new filter; the same name and expression again returns it unchanged."""
        _check_name(name)
        if "\x00" in expression:  # PostgreSQL text cannot hold it; refused everywhere
            raise InvalidFilterExpression("a filter expression cannot contain a NUL character")
        compiled = compile_filter(expression, **self._schemas)
        stored, created_at = self._insert_if_absent(name, expression, time.time())
        if stored != expression:
            raise FilterAlreadyExists(
                f"filter {name!r} already exists with another expression; "
                "filters cannot be edited: delete it first or pick a new name"
            )
        self._compiled.setdefault((name, expression), compiled)
        self._read_at.pop(name, None)  # "missing" no more, in this process at once
        return self._named(name, expression, created_at)

    def get(self, name: str, *, max_age_seconds: float | None = None) -> NamedFilter:
        """The filter called ``name``; raises :class:`UnknownFilter`.

        With ``max_age_seconds``, a definition this object read at most that long ago is
        returned without reading the store (the feed asks on every request; a filter never
        changes, so the age only bounds how long another host's delete goes unseen). Then
        too, while the store is unreachable, a definition read before is returned however
        old, so that the feed keeps serving through an outage.
        """
        seen = self._read_at.get(name)
        if max_age_seconds is not None and seen is not None:
            if time.monotonic() - seen[0] <= max_age_seconds:
                if seen[1] is None:  # known to be missing (a request each would ask)
                    raise UnknownFilter(f"no filter named {name!r}; create it first")
                return seen[1]
        try:
            named = self._get(name)
        except StoreUnavailable:
            if max_age_seconds is None or seen is None or seen[1] is None:
                raise
            # Ask again after another max_age_seconds, not on every request meanwhile.
            self._read_at[name] = (time.monotonic(), seen[1])
            return seen[1]
        except UnknownFilter:
            if len(self._read_at) >= MAX_REMEMBERED_MISSING:
                # Names asked for are the client's: forget the missing ones rather than
                # remember every name ever tried.
                for missing in [n for n, (_, f) in self._read_at.items() if f is None]:
                    del self._read_at[missing]
            self._read_at[name] = (time.monotonic(), None)
            raise
        self._read_at[name] = (time.monotonic(), named)
        return named

    def _get(self, name: str) -> NamedFilter:
        row = self._row(name)
        if row is None:
            raise UnknownFilter(f"no filter named {name!r}; create it first")
        return self._named(name, row[0], row[1])

    def list(self) -> list[NamedFilter]:
        """Every stored filter, by name."""
        return [self._named(*row) for row in self._rows()]

    def delete(self, name: str) -> None:
        """Remove the filter called ``name``; raises :class:`UnknownFilter`."""
        deleted = self._delete_row(name)
        self._read_at.pop(name, None)
        if not deleted:
            raise UnknownFilter(f"no filter named {name!r} to delete")
        for key in [k for k in self._compiled if k[0] == name]:
            del self._compiled[key]

    def version(self) -> int:
        """A counter that every create or delete by any host or process raises: a reader
        compares it with the one it saw to learn cheaply that filters changed."""
        return self._version()

    # -------------------------------------------------------------- helpers

    def _named(self, name: str, expression: str, created_at: float) -> NamedFilter:
        # Keyed by text too: another process may have deleted and re-created the name.
        compiled = self._compiled.get((name, expression))
        if compiled is None:
            compiled = self._compiled[(name, expression)] = compile_filter(
                expression, **self._schemas
            )
        return NamedFilter(name, expression, created_at, compiled)

    # Row operations of a backend.
    def _insert_if_absent(self, name: str, expression: str,
                          created_at: float) -> tuple[str, float]:
        """Insert unless the name exists; the (expression, created_at) stored now."""
        raise NotImplementedError

    def _row(self, name: str) -> tuple[str, float] | None:
        raise NotImplementedError

    def _rows(self) -> list[tuple[str, str, float]]:
        """(name, expression, created_at) of every filter, by name (byte order)."""
        raise NotImplementedError

    def _delete_row(self, name: str) -> bool:
        raise NotImplementedError

    def _version(self) -> int:
        raise NotImplementedError


class FilterStore(FilterStoreBase):
    """Create, get, list and delete named filters in a SQLite file."""

    def __init__(
        self,
        sqlite_path: Path | str,
        *,
        items_schema: DatasetSchema | None = None,
        users_schema: DatasetSchema | None = None,
    ) -> None:
        super().__init__(items_schema, users_schema)
        self.path = Path(sqlite_path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=_BUSY_TIMEOUT_SECONDS, check_same_thread=False,
            isolation_level=None,  # explicit transactions below
        )
        enable_wal(self._conn, _BUSY_TIMEOUT_SECONDS)
        self._conn.execute("PRAGMA synchronous=FULL")
        self.upgrade()  # one host owns the file: its tables are created on open, as always
        # Reads on a connection of their own: on the writes' one they waited behind its
        # lock, which a write holds while it waits for the file's write lock (an import
        # holds that for minutes), and a feed with a filter reads it every second.
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_SECONDS,
                                       check_same_thread=False, isolation_level=None)

    def upgrade(self) -> None:
        with self._lock:
            self._conn.execute(_SCHEMA_SQL)
            self._conn.execute(CHANGES_TABLE_SQL)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._read_lock:
            self._reader.close()

    def _insert_if_absent(self, name: str, expression: str,
                          created_at: float) -> tuple[str, float]:
        with sqlite_write(self._conn, self._lock):
            row = self._conn.execute(
                "SELECT expression, created_at FROM filters WHERE name = ?", (name,)
            ).fetchone()
            if row is not None:
                self._conn.execute("ROLLBACK")
                return row[0], row[1]
            self._conn.execute(
                "INSERT INTO filters (name, expression, created_at) VALUES (?, ?, ?)",
                (name, expression, created_at),
            )
            self._conn.execute(BUMP_CHANGES_SQL.format(p="?"), (CHANGES_COMPONENT,))
        return expression, created_at

    def _row(self, name: str) -> tuple[str, float] | None:
        with self._read_lock:
            return self._reader.execute(
                "SELECT expression, created_at FROM filters WHERE name = ?", (name,)
            ).fetchone()

    def _rows(self) -> list[tuple[str, str, float]]:
        with self._read_lock:
            return self._reader.execute(
                "SELECT name, expression, created_at FROM filters ORDER BY name"
            ).fetchall()

    def _delete_row(self, name: str) -> bool:
        with sqlite_write(self._conn, self._lock):
            deleted = self._conn.execute(
                "DELETE FROM filters WHERE name = ?", (name,)).rowcount
            if deleted:
                self._conn.execute(BUMP_CHANGES_SQL.format(p="?"), (CHANGES_COMPONENT,))
        return bool(deleted)

    def _version(self) -> int:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT seq FROM hunch_changes WHERE component = ?", (CHANGES_COMPONENT,)
            ).fetchone()
        return 0 if row is None else int(row[0])


def open_filter_store(
    url_or_path: str | Path,
    *,
    items_schema: DatasetSchema | None = None,
    users_schema: DatasetSchema | None = None,
    upgrade: bool = False,
) -> FilterStoreProtocol:
    """The filter store that ``HUNCH_STORE_URL`` names: a SQLite path or ``sqlite:///``
    URL (the event store's file, as today) or a ``postgresql://`` URL.

    On PostgreSQL an outdated schema raises ``SchemaOutdated`` unless ``upgrade`` (what
    ``hunch db upgrade`` passes); SQLite always creates its tables on open."""
    kind, where = store_location(url_or_path)
    if kind == "postgresql":
        from recsys.filters.pg_store import PostgresFilterStore

        return PostgresFilterStore(str(where), items_schema=items_schema,
                                   users_schema=users_schema, upgrade=upgrade)
    return FilterStore(where, items_schema=items_schema, users_schema=users_schema)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _FILTER_NAME.fullmatch(name):
        raise InvalidFilterName(
            f"filter name {name!r} must be 1-63 letters, digits, '-' or '_', starting "
            "with a letter or digit"
        )
