"""Promotions with Amazon Personalize's semantics, plus named, scheduled promotions.

Personalize: at most one promotion per request, ``{name, percentPromotedItems (1..100),
filterArn, filterValues}``. That share of the returned items comes from the promotion's
filter; the request's own filter applies only to the rest. Promoted items sit at random
positions among the others but keep their own relative order, and each carries
``promotionName``. When too few items match, as many as possible are promoted.

Here a promotion is also stored durably by name, with an optional start and end time and
a priority, so that the feed applies the active one by itself and internal tools manage
them (create, update, delete, list) through :class:`PromotionStore`.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from recsys.errors import HunchError

MAX_PROMOTION_NAME_LENGTH = 256


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


class PromotionStore:
    """Named promotions in SQLite (the event store's file; a table of its own)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                     isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # an acknowledged change survives
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS promotions (name TEXT PRIMARY KEY, body TEXT NOT NULL,"
            " updated_at REAL NOT NULL)")

    def create(self, promotion: Promotion) -> Promotion:
        with self._lock:
            try:
                self._conn.execute("INSERT INTO promotions VALUES (?, ?, ?)",
                                   (promotion.name, json.dumps(asdict(promotion)), time.time()))
            except sqlite3.IntegrityError as exc:
                raise PromotionAlreadyExists(
                    f"a promotion named {promotion.name!r} exists; update it instead") from exc
        return promotion

    def update(self, name: str, **changes) -> Promotion:
        updated = replace(self.get(name), **changes)  # validation runs in __post_init__
        if updated.name != name:
            raise InvalidPromotion("a promotion cannot be renamed; create a new one")
        with self._lock:
            self._conn.execute("UPDATE promotions SET body = ?, updated_at = ? WHERE name = ?",
                               (json.dumps(asdict(updated)), time.time(), name))
        return updated

    def delete(self, name: str) -> None:
        with self._lock:
            cur = self._conn.execute("DELETE FROM promotions WHERE name = ?", (name,))
        if cur.rowcount == 0:
            raise UnknownPromotion(f"no promotion named {name!r}")

    def get(self, name: str) -> Promotion:
        with self._lock:
            row = self._conn.execute("SELECT body FROM promotions WHERE name = ?",
                                     (name,)).fetchone()
        if row is None:
            raise UnknownPromotion(f"no promotion named {name!r}")
        return Promotion(**json.loads(row[0]))

    def list(self) -> list[Promotion]:
        with self._lock:
            rows = self._conn.execute("SELECT body FROM promotions ORDER BY name").fetchall()
        return [Promotion(**json.loads(r[0])) for r in rows]

    def active(self, now: float | None = None) -> Promotion | None:
        """The promotion the feed applies now: the highest priority among those whose
        window contains ``now`` (ties go to the name that sorts first)."""
        now = time.time() if now is None else now
        live = [p for p in self.list() if p.active_at(now)]
        if not live:
            return None
        return min(live, key=lambda p: (-p.priority, p.name))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
