"""Named filters, kept durably in SQLite like Personalize's CreateFilter resources.

Internal tools create a filter once by name ("exclude-voted") and requests refer to it
by that name. As in Personalize, a filter cannot be edited: creating a name again with
the same expression is a no-op (so deploy scripts can be re-run), with a different one
an error; delete and re-create to change it. Every expression is compiled before it is
stored, so a stored filter always compiles.

The database file is shared with the event store (recsys/events.py); this module keeps
to its own ``filters`` table and its own connection. WAL with synchronous=FULL makes an
acknowledged create or delete survive a crash or power loss.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from recsys.errors import HunchError
from recsys.filters.compiler import CompiledFilter, compile_filter
from recsys.schemas import DatasetSchema

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


class FilterStore:
    """Create, get, list and delete named filters in a SQLite file."""

    def __init__(
        self,
        sqlite_path: Path | str,
        *,
        items_schema: DatasetSchema | None = None,
        users_schema: DatasetSchema | None = None,
    ) -> None:
        self.path = Path(sqlite_path)
        self._schemas = {"items_schema": items_schema, "users_schema": users_schema}
        self._lock = threading.Lock()
        self._compiled: dict[tuple[str, str], CompiledFilter] = {}
        self._read_at: dict[str, tuple[float, NamedFilter]] = {}  # see get(max_age_seconds)
        self._conn = sqlite3.connect(
            str(self.path), timeout=_BUSY_TIMEOUT_SECONDS, check_same_thread=False,
            isolation_level=None,  # explicit transactions below
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(_SCHEMA_SQL)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> FilterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- operations

    def create(self, name: str, expression: str) -> NamedFilter:
        """Store a new filter; the same name and expression again returns it unchanged."""
        _check_name(name)
        compiled = compile_filter(expression, **self._schemas)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT expression, created_at FROM filters WHERE name = ?", (name,)
                ).fetchone()
                if row is not None:
                    self._conn.execute("ROLLBACK")
                    if row[0] != expression:
                        raise FilterAlreadyExists(
                            f"filter {name!r} already exists with another expression; "
                            "filters cannot be edited: delete it first or pick a new name"
                        )
                    return self._named(name, row[0], row[1])
                created_at = time.time()
                self._conn.execute(
                    "INSERT INTO filters (name, expression, created_at) VALUES (?, ?, ?)",
                    (name, expression, created_at),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        self._compiled[(name, expression)] = compiled
        return NamedFilter(name, expression, created_at, compiled)

    def get(self, name: str, *, max_age_seconds: float | None = None) -> NamedFilter:
        """The filter called ``name``; raises :class:`UnknownFilter`.

        With ``max_age_seconds``, a definition this object read at most that long ago is
        returned without reading the file (the feed asks on every request; a filter never
        changes, so the age only bounds how long another process's delete goes unseen).
        """
        if max_age_seconds is not None:
            seen = self._read_at.get(name)
            if seen is not None and time.monotonic() - seen[0] <= max_age_seconds:
                return seen[1]
        named = self._get(name)
        self._read_at[name] = (time.monotonic(), named)
        return named

    def _get(self, name: str) -> NamedFilter:
        with self._lock:
            row = self._conn.execute(
                "SELECT expression, created_at FROM filters WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise UnknownFilter(f"no filter named {name!r}; create it first")
        return self._named(name, row[0], row[1])

    def list(self) -> list[NamedFilter]:
        """Every stored filter, by name."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, expression, created_at FROM filters ORDER BY name"
            ).fetchall()
        return [self._named(*row) for row in rows]

    def delete(self, name: str) -> None:
        """Remove the filter called ``name``; raises :class:`UnknownFilter`."""
        with self._lock:
            deleted = self._conn.execute(
                "DELETE FROM filters WHERE name = ?", (name,)
            ).rowcount
        self._read_at.pop(name, None)
        if not deleted:
            raise UnknownFilter(f"no filter named {name!r} to delete")
        for key in [k for k in self._compiled if k[0] == name]:
            del self._compiled[key]

    # -------------------------------------------------------------- helpers

    def _named(self, name: str, expression: str, created_at: float) -> NamedFilter:
        # Keyed by text too: another process may have deleted and re-created the name.
        compiled = self._compiled.get((name, expression))
        if compiled is None:
            compiled = self._compiled[(name, expression)] = compile_filter(
                expression, **self._schemas
            )
        return NamedFilter(name, expression, created_at, compiled)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _FILTER_NAME.fullmatch(name):
        raise InvalidFilterName(
            f"filter name {name!r} must be 1-63 letters, digits, '-' or '_', starting "
            "with a letter or digit"
        )
