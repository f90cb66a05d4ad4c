"""Named filters in PostgreSQL, shared by every host (see recsys/filters/store.py for the
semantics, which :class:`FilterStoreBase` keeps identical to the SQLite store's)."""

from __future__ import annotations

from recsys.filters.store import CHANGES_COMPONENT, FilterStoreBase
from recsys.schemas import DatasetSchema
from recsys.store_db import (
    BUMP_CHANGES_SQL,
    CHANGES_TABLE_SQL,
    SchemaGate,
    open_pool,
    unavailable_as_typed,
    upgrade_component,
)

SCHEMA_COMPONENT = "filters"
# migrations[i] takes the component from version i to i + 1; append, never edit.
MIGRATIONS: list[str] = [
    # 1: the SQLite table's columns; created_at is epoch seconds as there.
    "CREATE TABLE filters (name TEXT PRIMARY KEY, expression TEXT NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL);" + CHANGES_TABLE_SQL,
]
SCHEMA_VERSION = len(MIGRATIONS)


class PostgresFilterStore(FilterStoreBase):
    """Create, get, list and delete named filters in a PostgreSQL database."""

    def __init__(
        self,
        url: str,
        *,
        items_schema: DatasetSchema | None = None,
        users_schema: DatasetSchema | None = None,
        upgrade: bool = False,
    ) -> None:
        super().__init__(items_schema, users_schema)
        self._pool = open_pool(url, name="hunch-filters")
        self._schema = SchemaGate(self._pool, SCHEMA_COMPONENT, SCHEMA_VERSION)
        try:
            self._schema.open(self.upgrade if upgrade else None)
        except BaseException:  # SchemaOutdated: no pool threads left behind
            self._pool.close()
            raise

    def upgrade(self) -> None:
        upgrade_component(self._pool, SCHEMA_COMPONENT, MIGRATIONS)

    def close(self) -> None:
        self._pool.close()

    def _insert_if_absent(self, name: str, expression: str,
                          created_at: float) -> tuple[str, float]:
        with unavailable_as_typed(f"creating filter {name!r}"):
            self._schema.check()
            while True:
                with self._pool.connection() as conn, conn.transaction():
                    # A concurrent insert of the name waits here until the other commits.
                    inserted = conn.execute(
                        "INSERT INTO filters (name, expression, created_at) VALUES (%s, %s, %s)"
                        " ON CONFLICT (name) DO NOTHING RETURNING expression, created_at",
                        (name, expression, created_at)).fetchone()
                    if inserted is not None:
                        conn.execute(BUMP_CHANGES_SQL.format(p="%s"), (CHANGES_COMPONENT,))
                        return inserted[0], inserted[1]
                    existing = conn.execute(
                        "SELECT expression, created_at FROM filters WHERE name = %s",
                        (name,)).fetchone()
                if existing is not None:
                    return existing[0], existing[1]
                # Deleted between the two statements: try the insert again.

    def _row(self, name: str) -> tuple[str, float] | None:
        with unavailable_as_typed(f"reading filter {name!r}"):
            self._schema.check()
            with self._pool.connection() as conn:
                return conn.execute(
                    "SELECT expression, created_at FROM filters WHERE name = %s",
                    (name,)).fetchone()

    def _rows(self) -> list[tuple[str, str, float]]:
        with unavailable_as_typed("listing filters"):
            self._schema.check()
            with self._pool.connection() as conn:
                # COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
                return conn.execute(
                    'SELECT name, expression, created_at FROM filters ORDER BY name COLLATE "C"'
                ).fetchall()

    def _delete_row(self, name: str) -> bool:
        with unavailable_as_typed(f"deleting filter {name!r}"):
            self._schema.check()
            with self._pool.connection() as conn, conn.transaction():
                deleted = conn.execute("DELETE FROM filters WHERE name = %s", (name,)).rowcount
                if deleted:
                    conn.execute(BUMP_CHANGES_SQL.format(p="%s"), (CHANGES_COMPONENT,))
        return bool(deleted)

    def _version(self) -> int:
        with unavailable_as_typed("reading the filters' version"):
            self._schema.check()
            with self._pool.connection() as conn:
                row = conn.execute("SELECT seq FROM hunch_changes WHERE component = %s",
                                   (CHANGES_COMPONENT,)).fetchone()
        return 0 if row is None else int(row[0])
