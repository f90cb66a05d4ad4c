"""Input checks shared by both GraphStore implementations, so they refuse the same things
before writing anything."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

from graph.errors import InvalidGraphData
from graph.store import Follow, Labels
from hunchio.values import (
    CONTROL,
    INVISIBLE,
    MAX_ID_LENGTH,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    echo,
    padded,
    parse_integer,
    refused_characters,
)

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


# -- ids and times of follows.csv --------------------------------------------------------
# The rules of recsys.admission.check_user_id and check_timestamp (hunchio.values holds
# them for both): a follows.csv `hunch graph cluster` accepts yields a users.csv `hunch
# data import` accepts, and users the API could name.


def user_id_problem(column: str, value: str) -> str | None:
    """Why ``value`` cannot be a user id (what to fix), or None. '|' is allowed: sign-in
    providers issue ids such as "google-oauth2|1093"."""
    if value == "":
        return f"{column} is empty but required"
    if len(value) > MAX_ID_LENGTH:
        return (f"{column} is {len(value)} characters long; ids may have at most "
                f"{MAX_ID_LENGTH}")
    if padded(value):
        return (f"{column} {echo(value)} starts or ends with whitespace (another user than "
                "without it); write it without")
    for i, char, why in refused_characters(value):
        if why == INVISIBLE:
            return (f"{column} {echo(value)} contains the invisible character "
                    f"U+{ord(char):04X} at position {i}; write visible characters")
        if why == CONTROL:
            return (f"{column} {echo(value)} contains the control character "
                    f"U+{ord(char):04X} at position {i}; write printable text")
        return (  # SURROGATE
            f"{column} {echo(value)} is not valid Unicode (character {i} is a lone "
            "surrogate); write UTF-8 text")
    return None


def timestamp_problem(column: str, raw: str) -> tuple[int | None, str | None]:
    """(epoch seconds, None) or (None, why not), read as the import reads a long: an
    integer, or a number with no fraction ("1.7e9"), of a real date."""
    if raw == "":
        return None, f"{column} is empty but required"
    value = parse_integer(raw)
    if value is None:
        return None, f"{column} {raw[:40]!r} is not an integer (epoch seconds)"
    if not MIN_TIMESTAMP <= value <= MAX_TIMESTAMP:
        return None, (f"{column} {raw[:40]!r} is not a date (years 1 to 9999); write epoch "
                      "seconds")
    return value, None
