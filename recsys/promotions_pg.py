"""Named promotions in PostgreSQL, shared by every host (see recsys/promotions.py for the
semantics, which :class:`PromotionStoreBase` keeps identical to the SQLite store's)."""

from __future__ import annotations

from collections.abc import Callable

from psycopg.types.json import Jsonb

from recsys.promotions import CHANGES_COMPONENT, PromotionStoreBase
from recsys.store_db import (
    BUMP_CHANGES_SQL,
    CHANGES_TABLE_SQL,
    SchemaGate,
    open_pool,
    unavailable_as_typed,
    upgrade_component,
)

SCHEMA_COMPONENT = "promotions"
# migrations[i] takes the component from version i to i + 1; append, never edit.
MIGRATIONS: list[str] = [
    # 1: the SQLite table's columns; the body is the Promotion's fields as JSON.
    "CREATE TABLE promotions (name TEXT PRIMARY KEY, body JSONB NOT NULL,"
    " updated_at DOUBLE PRECISION NOT NULL);" + CHANGES_TABLE_SQL,
]
SCHEMA_VERSION = len(MIGRATIONS)
_BUMP = BUMP_CHANGES_SQL.format(p="%s")


class PostgresPromotionStore(PromotionStoreBase):
    """Named promotions in a PostgreSQL database."""

    def __init__(self, url: str, *, upgrade: bool = False):
        self._pool = open_pool(url, name="hunch-promotions")
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

    def _insert(self, name: str, body: dict, updated_at: float) -> bool:
        with unavailable_as_typed(f"creating promotion {name!r}"):
            self._schema.check()
            with self._pool.connection() as conn, conn.transaction():
                # A concurrent insert of the name waits here until the other commits.
                inserted = conn.execute(
                    "INSERT INTO promotions (name, body, updated_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (name) DO NOTHING", (name, Jsonb(body), updated_at)).rowcount
                if inserted:
                    conn.execute(_BUMP, (CHANGES_COMPONENT,))
        return bool(inserted)

    def _update_row(self, name: str, change: Callable[[dict], dict],
                    updated_at: float) -> dict | None:
        with unavailable_as_typed(f"updating promotion {name!r}"):
            self._schema.check()
            with self._pool.connection() as conn, conn.transaction():
                row = conn.execute("SELECT body FROM promotions WHERE name = %s FOR UPDATE",
                                   (name,)).fetchone()
                if row is None:
                    return None
                body = change(row[0])
                conn.execute("UPDATE promotions SET body = %s, updated_at = %s WHERE name = %s",
                             (Jsonb(body), updated_at, name))
                conn.execute(_BUMP, (CHANGES_COMPONENT,))
        return body

    def _delete_row(self, name: str) -> bool:
        with unavailable_as_typed(f"deleting promotion {name!r}"):
            self._schema.check()
            with self._pool.connection() as conn, conn.transaction():
                deleted = conn.execute("DELETE FROM promotions WHERE name = %s",
                                       (name,)).rowcount
                if deleted:
                    conn.execute(_BUMP, (CHANGES_COMPONENT,))
        return bool(deleted)

    def _body(self, name: str) -> dict | None:
        with unavailable_as_typed(f"reading promotion {name!r}"):
            self._schema.check()
            with self._pool.connection() as conn:
                row = conn.execute("SELECT body FROM promotions WHERE name = %s",
                                   (name,)).fetchone()
        return None if row is None else row[0]

    def _bodies(self) -> list[dict]:
        with unavailable_as_typed("listing promotions"):
            self._schema.check()
            with self._pool.connection() as conn:
                # COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
                rows = conn.execute(
                    'SELECT body FROM promotions ORDER BY name COLLATE "C"').fetchall()
        return [r[0] for r in rows]

    def _version(self) -> int:
        with unavailable_as_typed("reading the promotions' version"):
            self._schema.check()
            with self._pool.connection() as conn:
                row = conn.execute("SELECT seq FROM hunch_changes WHERE component = %s",
                                   (CHANGES_COMPONENT,)).fetchone()
        return 0 if row is None else int(row[0])
