"""Input checks shared by both GraphStore implementations, so they refuse the same things
before writing anything."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

from graph.errors import InvalidGraphData
from graph.store import Follow, Labels

T = TypeVar("T")


def check_follows(follows: Iterable[Follow]) -> list[Follow]:
    rows = list(follows)
    selfish = [f.follower for f in rows if f.follower == f.followee]
    if selfish:
        raise InvalidGraphData(
            f"user {selfish[0]!r} cannot follow themselves ({len(selfish)} such follow(s)); "
            "drop those rows and retry"
        )
    return rows


def check_labels(labels: Mapping[str, Labels]) -> None:
    for user_id, label in labels.items():
        if not isinstance(label, Labels):
            raise InvalidGraphData(
                f"labels of user {user_id!r} must be a graph.store.Labels, "
                f"got {type(label).__name__}"
            )
        for field in ("cluster", "community"):
            value = getattr(label, field)
            if value is not None and not isinstance(value, str):
                raise InvalidGraphData(
                    f"{field} of user {user_id!r} must be a string or None "
                    f"(it becomes categorical user metadata), got {value!r}"
                )


def check_limit(limit: int) -> None:
    if limit < 0:
        raise InvalidGraphData(f"limit must be 0 or more, got {limit}")


def last_by_key(rows: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """Drop duplicates, keeping the last row of each key (an upsert's last write wins)."""
    return list({key(row): row for row in rows}.values())
