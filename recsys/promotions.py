"""Promotions with Amazon Personalize's semantics, plus named, scheduled promotions.

Personalize: at most one promotion per request, ``{name, percentPromotedItems (1..100),
filterArn, filterValues}``. That share of the returned items comes from the promotion's
filter; the request's own filter applies only to the rest. Promoted items sit at random
positions among the others but keep their own relative order, and each carries
``promotionName``. When too few items match, as many as possible are promoted.

Here a promotion is also stored durably by name, with an optional start and end time and
a priority, so that the feed applies the active one by itself and internal tools manage
them (create, update, delete, list) through a promotion store: :class:`PromotionStore` in
SQLite (the embedded default) or ``PostgresPromotionStore`` (recsys/promotions_pg.py) that
several hosts share, picked by :func:`open_promotion_store` from ``HUNCH_STORE_URL``. Both
share the logic of :class:`PromotionStoreBase`; every write raises ``version()`` so that
each host's feed learns of a change by polling one row.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from recsys.errors import HunchError
from recsys.sqlite_wal import enable_wal
from recsys.store_db import BUMP_CHANGES_SQL, CHANGES_TABLE_SQL, sqlite_write, store_location

MAX_PROMOTION_NAME_LENGTH = 256
CHANGES_COMPONENT = "promotions"  # its row in hunch_changes (see version())


class InvalidPromotion(HunchError):
    """A promotion's fields are out of range (percent, times, name)."""


class UnknownPromotion(HunchError):
    """No promotion has that name."""


class PromotionAlreadyExists(HunchError):
    """A promotion with that name exists; update it or pick another name."""


@dataclass(frozen=True)
class Promotion:
    name: str
    percent_promoted_items: int
    # Which polls may be promoted: an expression in Personalize's filter language, or the
    # name of a stored filter (needed for the Personalize backend, which takes its ARN).
    filter_expression: str = ""
    filter_values: dict[str, str] = field(default_factory=dict)
    start_at: float | None = None  # epoch seconds; None = already started
    end_at: float | None = None  # None = never ends
    priority: int = 0  # the highest-priority active promotion wins
    filter_name: str | None = None

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > MAX_PROMOTION_NAME_LENGTH:
            raise InvalidPromotion(
                f"a promotion name needs 1 to {MAX_PROMOTION_NAME_LENGTH} characters")
        if not isinstance(self.percent_promoted_items, int) or not (
            1 <= self.percent_promoted_items <= 100
        ):
            raise InvalidPromotion(
                f"percentPromotedItems must be an integer from 1 to 100, "
                f"got {self.percent_promoted_items!r}")
        if not self.filter_expression.strip() and not self.filter_name:
            raise InvalidPromotion(
                "a promotion needs a filter (an expression or a stored filter's name) "
                "that selects the polls it promotes")
        if self.start_at is not None and self.end_at is not None and self.end_at <= self.start_at:
            raise InvalidPromotion("a promotion's end time must come after its start time")
        texts = [self.name, self.filter_expression, self.filter_name or "",
                 *self.filter_values, *self.filter_values.values()]
        if any("\x00" in t for t in texts if isinstance(t, str)):
            # PostgreSQL text cannot hold it; refused in every store alike.
            raise InvalidPromotion("a promotion's name and filter cannot contain NUL characters")

    def active_at(self, now: float) -> bool:
        return (self.start_at is None or self.start_at <= now) and (
            self.end_at is None or now < self.end_at)

    def promoted_count(self, n: int) -> int:
        """How many of ``n`` slots this promotion takes (at least one when n > 0)."""
        if n <= 0:
            return 0
        return min(n, max(1, math.floor(n * self.percent_promoted_items / 100 + 0.5)))


T = TypeVar("T")


def interleave_promoted(regular: list[T], promoted: list[T], n: int, promoted_count: int,
                        rng: random.Random) -> tuple[list[T], list[int]]:
    """Place up to ``promoted_count`` promoted items at random positions among the regular
    ones, both lists keeping their own order. Returns the page and the promoted positions.

    When too few promoted items exist, as many as possible are placed and regular items
    fill the rest; when too few regular items exist, more promoted ones may fill in.
    """
    k = min(promoted_count, len(promoted))
    k = max(k, min(len(promoted), n - len(regular)))  # regular ran short: promote more
    total = min(n, k + len(regular))
    positions = sorted(rng.sample(range(total), k)) if k else []
    page: list[T] = []
    regular_iter, promoted_iter = iter(regular), iter(promoted)
    chosen = set(positions)
    for i in range(total):
        page.append(next(promoted_iter) if i in chosen else next(regular_iter))
    return page, positions


def select_active(promotions: Iterable[Promotion], now: float) -> Promotion | None:
    """The promotion the feed applies at ``now``: the highest priority among those whose
    window contains ``now`` (ties go to the name that sorts first)."""
    live = [p for p in promotions if p.active_at(now)]
    if not live:
        return None
    return min(live, key=lambda p: (-p.priority, p.name))


class PromotionStoreProtocol(Protocol):
    """What gateway/ and recsys/ use of a promotion store."""

    def create(self, promotion: Promotion) -> Promotion: ...
    def update(self, name: str, check: Callable[[Promotion], None] | None = None,
               **changes) -> Promotion: ...
    def delete(self, name: str) -> None: ...
    def get(self, name: str) -> Promotion: ...
    def list(self) -> list[Promotion]: ...
    def active(self, now: float | None = None) -> Promotion | None: ...
    def version(self) -> int: ...
    def upgrade(self) -> None: ...
    def close(self) -> None: ...


def _check_times(**times: float | None) -> None:
    """A time a promotion is written with: finite epoch seconds, or left out. A GraphQL
    Float literal such as 1e400 arrives as infinity: stored, it was written as JSON no
    reader takes, and every promotions query failed. Checked where a promotion is
    written, not where one is read: a row an older release stored still reads (an
    infinite end never ends), so feeds keep working and an admin can mend or delete it."""
    for what, value in times.items():
        if value is not None and not (isinstance(value, (int, float))
                                      and math.isfinite(value)):
            raise InvalidPromotion(f"{what} must be a finite time in epoch seconds "
                                   f"(or left out), got {value!r}")


class PromotionStoreBase:
    """The semantics of every promotion store; subclasses provide the row operations
    (``_insert``, ``_update_row``, ``_delete_row``, ``_body``, ``_bodies``, ``_version``)."""

    def create(self, promotion: Promotion) -> Promotion:
        _check_times(startAt=promotion.start_at, endAt=promotion.end_at)
        if not self._insert(promotion.name, asdict(promotion), time.time()):
            raise PromotionAlreadyExists(
                f"a promotion named {promotion.name!r} exists; update it instead")
        return promotion

    def update(self, name: str, check: Callable[[Promotion], None] | None = None,
               **changes) -> Promotion:
        """Change ``name``'s fields; ``check`` (e.g. that its filter applies) sees the
        updated promotion inside the transaction and raises to refuse it."""
        _check_times(startAt=changes.get("start_at"), endAt=changes.get("end_at"))

        def change(body: dict) -> dict:
            updated = replace(Promotion(**body), **changes)  # validation: __post_init__
            if updated.name != name:
                raise InvalidPromotion("a promotion cannot be renamed; create a new one")
            if check is not None:
                check(updated)
            return asdict(updated)

        # Read, change and write in one transaction: two hosts updating different fields
        # of one promotion at once both keep their change.
        body = self._update_row(name, change, time.time())
        if body is None:
            raise UnknownPromotion(f"no promotion named {name!r}")
        return Promotion(**body)

    def delete(self, name: str) -> None:
        if not self._delete_row(name):
            raise UnknownPromotion(f"no promotion named {name!r}")

    def get(self, name: str) -> Promotion:
        body = self._body(name)
        if body is None:
            raise UnknownPromotion(f"no promotion named {name!r}")
        return Promotion(**body)

    def list(self) -> list[Promotion]:
        return [Promotion(**body) for body in self._bodies()]

    def active(self, now: float | None = None) -> Promotion | None:
        """The promotion the feed applies now (see :func:`select_active`)."""
        return select_active(self.list(), time.time() if now is None else now)

    def version(self) -> int:
        """A counter that every create, update or delete by any host raises: a reader
        compares it with the one it saw to learn cheaply that promotions changed."""
        return self._version()

    def upgrade(self) -> None:
        """Apply pending schema migrations (see recsys/store_db.py)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Row operations of a backend.
    def _insert(self, name: str, body: dict, updated_at: float) -> bool:
        """Insert unless the name exists; False when it did."""
        raise NotImplementedError

    def _update_row(self, name: str, change: Callable[[dict], dict],
                    updated_at: float) -> dict | None:
        """Replace the body by ``change(body)`` atomically; None when the name is unknown."""
        raise NotImplementedError

    def _delete_row(self, name: str) -> bool:
        raise NotImplementedError

    def _body(self, name: str) -> dict | None:
        raise NotImplementedError

    def _bodies(self) -> list[dict]:
        """Every promotion's body, by name (byte order)."""
        raise NotImplementedError

    def _version(self) -> int:
        raise NotImplementedError


class PromotionStore(PromotionStoreBase):
    """Named promotions in SQLite (the event store's file; a table of its own)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                     isolation_level=None)
        enable_wal(self._conn)
        self._conn.execute("PRAGMA synchronous=FULL")  # an acknowledged change survives
        self.upgrade()  # one host owns the file: its tables are created on open, as always
        # Reads on a connection of their own: on the writes' one they waited behind its
        # lock, which a write holds while it waits for the file's write lock (an import
        # holds that for minutes), and the feed reads the version every second.
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                       isolation_level=None)

    def upgrade(self) -> None:
        with self._lock:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS promotions (name TEXT PRIMARY KEY, body TEXT NOT NULL,"
                " updated_at REAL NOT NULL)")
            self._conn.execute(CHANGES_TABLE_SQL)

    def _write(self, work: Callable[[], object]) -> object:
        """Run ``work`` in a write transaction that also raises the version."""
        with sqlite_write(self._conn, self._lock):
            result = work()
            if result:
                self._conn.execute(BUMP_CHANGES_SQL.format(p="?"), (CHANGES_COMPONENT,))
        return result

    def _insert(self, name: str, body: dict, updated_at: float) -> bool:
        return bool(self._write(lambda: self._conn.execute(
            "INSERT INTO promotions VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (name, json.dumps(body), updated_at)).rowcount))

    def _update_row(self, name: str, change: Callable[[dict], dict],
                    updated_at: float) -> dict | None:
        def work() -> dict | None:
            row = self._conn.execute("SELECT body FROM promotions WHERE name = ?",
                                     (name,)).fetchone()
            if row is None:
                return None
            body = change(json.loads(row[0]))
            self._conn.execute("UPDATE promotions SET body = ?, updated_at = ? WHERE name = ?",
                               (json.dumps(body), updated_at, name))
            return body

        return self._write(work)

    def _delete_row(self, name: str) -> bool:
        return bool(self._write(lambda: self._conn.execute(
            "DELETE FROM promotions WHERE name = ?", (name,)).rowcount))

    def _body(self, name: str) -> dict | None:
        with self._read_lock:
            row = self._reader.execute("SELECT body FROM promotions WHERE name = ?",
                                       (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _bodies(self) -> list[dict]:
        with self._read_lock:
            rows = self._reader.execute("SELECT body FROM promotions ORDER BY name").fetchall()
        return [json.loads(r[0]) for r in rows]

    def _version(self) -> int:
        with self._read_lock:
            row = self._reader.execute("SELECT seq FROM hunch_changes WHERE component = ?",
                                       (CHANGES_COMPONENT,)).fetchone()
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._read_lock:
            self._reader.close()


def open_promotion_store(url_or_path: str | Path, *,
                         upgrade: bool = False) -> PromotionStoreProtocol:
    """The promotion store that ``HUNCH_STORE_URL`` names: a SQLite path or ``sqlite:///``
    URL (the event store's file, as today) or a ``postgresql://`` URL.

    On PostgreSQL an outdated schema raises ``SchemaOutdated`` unless ``upgrade`` (what
    ``hunch db upgrade`` passes); SQLite always creates its tables on open."""
    kind, where = store_location(url_or_path)
    if kind == "postgresql":
        from recsys.promotions_pg import PostgresPromotionStore

        return PostgresPromotionStore(str(where), upgrade=upgrade)
    return PromotionStore(where)
