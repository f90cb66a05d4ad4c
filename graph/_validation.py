"""Input checks shared by both GraphStore implementations, so they refuse the same things
before writing anything."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

from graph.errors import InvalidGraphData
from graph.store import Engagement, Follow, Labels, PollAuthorship
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


def _id_problem(what: str, value: object) -> str | None:
    # Cheap enough for a million rows: the files and the API check the full rules
    # (user_id_problem); this keeps what neither store could hold alike out of both.
    # Neo4j refused an id of some 8,000 characters (its index key limit) where the
    # memory store took it, and None where the memory store made a user of it.
    if type(value) is not str or not value:
        return f"{what} must be a non-empty string, got {echo(value)}"
    if len(value) > MAX_ID_LENGTH:
        return f"{what} {echo(value, 40)} is longer than {MAX_ID_LENGTH} characters"
    return None


# What Neo4j can hold: the files and the API bound times to real dates, but a store an
# older release filled may hold a poll created in milliseconds, and a worker must still
# build its graph from it.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _time_problem(what: str, value: object) -> str | None:
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        return f"{what} must be integer epoch seconds (a 64-bit integer), got {echo(value)}"
    return None


def _refuse(problems: Iterable[str | None]) -> None:
    for problem in problems:
        if problem is not None:
            raise InvalidGraphData(f"{problem}; nothing was written")


def check_user_ids(user_ids: Iterable[str]) -> list[str]:
    ids = list(user_ids)
    _refuse(_id_problem("a user id", u) for u in ids)
    return ids


def check_polls(polls: Iterable[PollAuthorship]) -> list[PollAuthorship]:
    rows = list(polls)
    for p in rows:
        _refuse((_id_problem("a poll id", p.poll_id), _id_problem("an author id", p.author_id),
                 _time_problem(f"created_at of poll {p.poll_id!r}", p.created_at)))
    return rows


def check_engagements(engagements: Iterable[Engagement]) -> list[Engagement]:
    rows = list(engagements)
    for e in rows:
        _refuse((_id_problem("a user id", e.user_id), _id_problem("a poll id", e.poll_id),
                 _time_problem(f"the time of {e.user_id!r}'s engagement", e.timestamp)))
    return rows


def check_follows(follows: Iterable[Follow]) -> list[Follow]:
    rows = list(follows)
    for f in rows:
        _refuse((_id_problem("a follower id", f.follower),
                 _id_problem("a followee id", f.followee),
                 _time_problem(f"the time {f.follower!r} followed {f.followee!r}",
                               f.timestamp)))
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


def first_follows(rows: Iterable[Follow]) -> list[Follow]:
    """One row per (follower, followee), the earliest: a follow's time is when it was
    made, and a follow sent again (a retried or repeated click, a file listing it twice)
    does not make it newer."""
    earliest: dict[tuple[str, str], Follow] = {}
    for f in rows:
        known = earliest.get((f.follower, f.followee))
        if known is None or f.timestamp < known.timestamp:
            earliest[(f.follower, f.followee)] = f
    return list(earliest.values())


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
