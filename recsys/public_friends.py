"""A public friend graph with engagement (HetRec 2011 Last.fm) as this project's data.

Why: the follow-impact analysis asks whether the graph raises the share of followees'
items in a feed; the demo data plants that effect, so it has to be tried on a graph
nobody planted. HetRec 2011 Last.fm has mutual friendships and what each user listens
to, the graph docs/evidence-methods.md describes (1,892 users, 12,717 ties).

SOURCE is the archive, or a directory of its files as extracted (pinned one by one,
``recsys.public_sources.HETREC_LASTFM_FILES``, for where the archive cannot be had).
The layout (tab-separated, one header line each):

- ``user_friends.dat``: ``userID friendID``; each friendship is listed in both directions;
- ``user_artists.dat``: ``userID artistID weight`` (weight = that user's play count);
- ``artists.dat`` (optional): ``id name url pictureURL``;
- ``tags.dat`` + ``user_taggedartists.dat`` (optional): ``tagID tagValue`` and
  ``userID artistID tagID ...`` (who tagged which artist with what).

Mapping (docs/public-data.md says the same for users of the command):

- follows.csv: a friendship is mutual, so it becomes two follows (each way);
- interactions.csv: one ``LISTEN`` per (user, artist) with the play count as EVENT_VALUE;
- items.csv: one item per artist, DESCRIPTION its name, CATEGORY its most used tag,
  AUTHOR_ID empty (no user wrote an artist: only "engaged with by a followee" applies);
- users.csv: every user seen in either file.

The archive has no time for listens or friendships. Friendships get the snapshot time
(``SNAPSHOT_TIMESTAMP``). Listens, by default, get a *random* order: each user's listens
are one second apart, ending at the snapshot, in a seeded shuffle. A protocol that holds
out each user's newest events then holds out a random sample, which is the only honest
holdout when no order exists (with one shared time it could hold out nothing).
``shuffle_seed=None`` gives every listen the snapshot time instead.
"""

from __future__ import annotations

import csv
import io
import random
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from recsys.errors import HunchError
from recsys.public_sources import HETREC_LASTFM_FILES, pinned, stale_dataset_files, verify
from recsys.schemas import CSV_FILES, INTERACTIONS, UNAUTHORED_ITEMS, USERS, write_schema

LISTEN_EVENT_TYPE = "LISTEN"
# 2011-05-01T00:00:00Z: the archive's readme dates version 1.0 "May 2011"; listens and
# friendships carry no time of their own.
SNAPSHOT_TIMESTAMP = 1_304_208_000
UNTAGGED_CATEGORY = "untagged"
FOLLOWS_FILE = "follows.csv"
FOLLOW_COLUMNS = ("FOLLOWER_ID", "FOLLOWEE_ID", "TIMESTAMP")
HETREC_LASTFM = "hetrec-lastfm-2k"

_FRIENDS, _PLAYS, _ARTISTS, _TAGS, _TAGGINGS = (
    "user_friends.dat", "user_artists.dat", "artists.dat", "tags.dat", "user_taggedartists.dat")


class FriendsFormatError(HunchError):
    """A friend-graph archive is not in the layout the converter reads."""


@dataclass(frozen=True)
class FriendsConversionReport:
    """What a conversion wrote, for the CLI to print."""

    out_dir: Path
    users: int
    friendships: int  # unordered pairs
    follows: int  # directed rows (two per friendship)
    interactions: int
    items: int
    tagged_items: int

    def describe(self) -> str:
        return (f"{self.out_dir}: {self.users:,} users, {self.friendships:,} friendships as "
                f"{self.follows:,} follows, {self.interactions:,} {LISTEN_EVENT_TYPE} "
                f"interactions on {self.items:,} artists ({self.tagged_items:,} with a tag as "
                f"CATEGORY)")


class _Files:
    """The dataset's files, in a zip archive or in a directory of extracted files."""

    def __init__(self, source: Path):
        self.source = source
        self.archive = None if source.is_dir() else zipfile.ZipFile(source)

    def names(self) -> list[str]:
        if self.archive is not None:
            return self.archive.namelist()
        return sorted(p.name for p in self.source.iterdir() if p.is_file())

    def open(self, name: str) -> IO[bytes]:
        return self.archive.open(name) if self.archive else open(self.source / name, "rb")

    def __enter__(self) -> _Files:
        return self

    def __exit__(self, *_exc) -> None:
        if self.archive is not None:
            self.archive.close()


def _member(archive: _Files, basename: str, source: Path, *, required: bool) -> str | None:
    found = [n for n in archive.names() if n.rsplit("/", 1)[-1] == basename]
    if len(found) > 1:
        raise FriendsFormatError(f"{source}: several {basename} in the archive: {', '.join(found)}")
    if not found and required:
        raise FriendsFormatError(
            f"{source}: no {basename} in the archive; expected HetRec 2011 Last.fm's layout "
            f"({_FRIENDS}, {_PLAYS}, optionally {_ARTISTS}, {_TAGS}, {_TAGGINGS})")
    return found[0] if found else None


def _rows(archive: _Files, name: str, width: int) -> Iterator[tuple[int, list[str]]]:
    """(line number, first ``width`` fields) of each data line, after the header."""
    # The archive's text files are not all clean UTF-8 (artist names); replace, never fail.
    with io.TextIOWrapper(archive.open(name), encoding="utf-8", errors="replace") as text:
        reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE)
        line = 1
        try:
            next(reader, None)
            for line, row in enumerate(reader, start=2):
                if not row or not any(row):
                    continue
                if len(row) < width:
                    raise FriendsFormatError(
                        f"{name}:{line}: expected {width} tab-separated fields, got {row!r}")
                yield line, [v.strip() for v in row[:width]]
        except csv.Error as exc:  # a field past the csv module's limit (128 KiB)
            raise FriendsFormatError(f"{name}:{line + 1}: unreadable ({exc})") from None


def _ids(name: str, line: int, *values: str) -> None:
    for v in values:
        if not (v.isascii() and v.isdigit()):  # "²" is a digit to isdigit(), not to int()
            raise FriendsFormatError(f"{name}:{line}: expected numeric ids, got {v!r}")


def _top_tags(archive: _Files, source: Path) -> dict[str, str]:
    """Each artist's most used tag (ties: the lower tag id), where tags are present."""
    tags_name = _member(archive, _TAGS, source, required=False)
    taggings_name = _member(archive, _TAGGINGS, source, required=False)
    if tags_name is None or taggings_name is None:
        return {}
    # '|' separates values of a categorical field; a tag must not split in two.
    tag_value = {t: v.replace("|", "/") or t for _, (t, v) in _rows(archive, tags_name, 2)}
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for line, (_, artist, tag) in _rows(archive, taggings_name, 3):
        _ids(taggings_name, line, artist, tag)
        counts[artist][tag] += 1
    return {artist: tag_value.get(min(c, key=lambda t: (-c[t], int(t))), UNTAGGED_CATEGORY)
            for artist, c in counts.items()}


def _write(path: Path, header: tuple[str, ...] | list[str], rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _listen_times(plays: dict[tuple[str, str], float], seed: int | None) -> dict:
    """Each (user, artist)'s timestamp: a seeded random order per user, or the snapshot."""
    if seed is None:
        return {pair: SNAPSHOT_TIMESTAMP for pair in plays}
    by_user: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pair in sorted(plays, key=lambda p: (int(p[0]), int(p[1]))):
        by_user[pair[0]].append(pair)
    rng = random.Random(seed)
    times = {}
    for pairs in by_user.values():
        rng.shuffle(pairs)
        for rank, pair in enumerate(pairs):  # the last one lands on the snapshot
            times[pair] = SNAPSHOT_TIMESTAMP - (len(pairs) - 1 - rank)
    return times


def _verify_extracted(source: Path, *, pinned_files: bool) -> None:
    """Check a directory of extracted files: the required ones are there, and every
    pinned file present has its pinned bytes (unless ``pinned_files`` is off)."""
    spec = HETREC_LASTFM_FILES
    for name in spec.required:
        if not (source / name).is_file():
            raise FriendsFormatError(
                f"{source}: no {name}; expected HetRec 2011 Last.fm's files ({_FRIENDS}, "
                f"{_PLAYS}, optionally {_ARTISTS}, {_TAGS}, {_TAGGINGS})")
    if not pinned_files:
        return
    for name, (_, sha256) in spec.files.items():
        if (source / name).is_file():
            verify(source / name, sha256,
                   what=f"{HETREC_LASTFM} {name} (from `{spec.obtain}`)")


def convert_friends(source: Path | str, out_dir: Path | str, *,
                    expected_sha256: str | None = None,
                    shuffle_seed: int | None = 0,
                    pinned_files: bool = True) -> FriendsConversionReport:
    """Write follows/interactions/items/users CSVs (and schemas) from HetRec Last.fm: the
    zip archive, or a directory holding its files as extracted.

    ``expected_sha256`` defaults to the pinned archive's; a file with other bytes is
    refused before anything is read or written. A directory's files are checked one by
    one against ``HETREC_LASTFM_FILES`` (``pinned_files=False`` skips that, knowingly).
    ``shuffle_seed`` orders each user's listens at random (the archive has no times);
    ``None`` stamps them all at the snapshot.
    """
    source = Path(source)
    if not source.exists():
        raise FriendsFormatError(f"{source} does not exist")
    if source.is_dir():
        if expected_sha256 is not None:
            raise FriendsFormatError(
                f"{source} is a directory: --sha256 pins an archive; for extracted files "
                "that are not the pinned ones pass --unpinned")
        _verify_extracted(source, pinned_files=pinned_files)
    else:
        spec = pinned(HETREC_LASTFM)
        verify(source, expected_sha256 or spec.sha256,
               what=f"{HETREC_LASTFM} archive ({spec.filename}, from {spec.obtain})")
        if not zipfile.is_zipfile(source):
            raise FriendsFormatError(f"{source} is not a zip archive")
    with _Files(source) as archive:
        friends_name = _member(archive, _FRIENDS, source, required=True)
        plays_name = _member(archive, _PLAYS, source, required=True)
        artists_name = _member(archive, _ARTISTS, source, required=False)
        assert friends_name and plays_name
        follows: set[tuple[str, str]] = set()
        for line, (user, friend) in _rows(archive, friends_name, 2):
            _ids(friends_name, line, user, friend)
            if user != friend:  # a friendship with oneself is no edge
                follows.update({(user, friend), (friend, user)})
        plays: dict[tuple[str, str], float] = {}
        for line, (user, artist, weight) in _rows(archive, plays_name, 3):
            _ids(plays_name, line, user, artist)
            try:
                plays[(user, artist)] = plays.get((user, artist), 0.0) + float(weight)
            except ValueError:
                raise FriendsFormatError(
                    f"{plays_name}:{line}: expected a play count, got {weight!r}") from None
        names = ({a: n for _, (a, n) in _rows(archive, artists_name, 2)}
                 if artists_name else {})
        top_tag = _top_tags(archive, source)
    if not plays:
        raise FriendsFormatError(f"{source}: {_PLAYS} has no rows")

    out = Path(out_dir)
    stale = stale_dataset_files(out, ("follows.csv", "interactions.csv", "items.csv",
                                      "users.csv"))
    if stale:
        raise FriendsFormatError(
            f"{out} already holds {', '.join(stale)}: they would be read with the converted "
            "data; convert into an empty directory (nothing was written)")
    out.mkdir(parents=True, exist_ok=True)
    key = lambda pair: (int(pair[0]), int(pair[1]))  # noqa: E731 (numeric, stable order)
    _write(out / FOLLOWS_FILE, FOLLOW_COLUMNS,
           ((a, b, SNAPSHOT_TIMESTAMP) for a, b in sorted(follows, key=key)))
    times = _listen_times(plays, shuffle_seed)
    _write(out / CSV_FILES["interactions"], INTERACTIONS.names[:5],
           ((u, a, times[(u, a)], LISTEN_EVENT_TYPE, f"{w:g}")
            for (u, a), w in sorted(plays.items(), key=lambda kv: (times[kv[0]], key(kv[0])))))
    artists = sorted({a for _, a in plays} | set(names), key=int)
    _write(out / CSV_FILES["items"], ["ITEM_ID", "CATEGORY", "AUTHOR_ID", "CREATION_TIMESTAMP",
                                      "DESCRIPTION"],
           ((a, top_tag.get(a, UNTAGGED_CATEGORY), "", SNAPSHOT_TIMESTAMP, names.get(a, ""))
            for a in artists))
    users = sorted({u for u, _ in plays} | {u for pair in follows for u in pair}, key=int)
    _write(out / CSV_FILES["users"], ["USER_ID"], ((u,) for u in users))
    # Artists are not written by users: AUTHOR_ID is empty.
    for schema in (INTERACTIONS, UNAUTHORED_ITEMS, USERS):
        write_schema(out, schema)
    return FriendsConversionReport(
        out_dir=out, users=len(users), friendships=len(follows) // 2, follows=len(follows),
        interactions=len(plays), items=len(artists),
        tagged_items=sum(1 for a in artists if a in top_tag))
