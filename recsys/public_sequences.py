"""Public next-item datasets (each user's items in time order) as Personalize Interactions.

Why: the other public sources are dense (MovieLens) or have no real order (HetRec
Last.fm). The sequential-recommendation literature ships sparse implicit datasets with
many items whose rows keep each user's time order: Amazon review categories (Beauty,
Sports and Outdoors, Toys and Games; McAuley et al., 5-core) and Yelp, as prepared for
S3-Rec and vendored by salesforce/ICLRec, and Amazon Video Games as SASRec's repository
ships it (Kang & McAuley 2018). Two layouts: one line per user (``lines``, ICLRec)

    USER ITEM ITEM ITEM ...

or one event per line (``pairs``, SASRec), a user's lines in their time order

    USER ITEM

items in the order the user reviewed them; no times, ratings or metadata. Each item
becomes one interaction (``EVENT_TYPE`` REVIEW). The order is real and the times are not,
so each user's events are one second apart and end at a common snapshot: a protocol that
holds out each user's newest events holds out their real last ones, and no poll looks
older than another (ages say nothing here, as in the source).

No download happens here: the converter reads a file the user already has (pins and how
to get them: recsys/public_sources.py, docs/public-data.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.errors import HunchError
from recsys.public_sources import stale_dataset_files
from recsys.schemas import CSV_FILES, write_interactions

REVIEW_EVENT_TYPE = "REVIEW"
LAYOUTS = ("lines", "pairs")
# The end of the synthetic timeline, 2014-07-23 (the end of McAuley's Amazon crawl): only
# the order within a user carries information.
SNAPSHOT_TIMESTAMP = 1_406_073_600
MAX_LINE_ITEMS = 100_000  # a longer line is not a user's history but a broken file
# Read at most this many characters of a line: split() would hold every field first.
MAX_LINE_CHARS = 64 * MAX_LINE_ITEMS
# What load_directory would read beside interactions.csv: a stale one mixes datasets.


class SequencesFormatError(HunchError):
    """A sequences file is not in its layout (``USER ITEM ITEM ...`` or ``USER ITEM`` per
    line)."""


@dataclass(frozen=True)
class SequencesReport:
    """What a conversion wrote, for the CLI to print."""

    source: str
    interactions: int
    users: int
    items: int
    repeats: int  # events of an item the user had already reviewed (kept: they happened)
    path: Path

    def describe(self) -> str:
        repeats = f", {self.repeats:,} of them repeats" if self.repeats else ""
        return (f"{self.path}: {self.interactions:,} {REVIEW_EVENT_TYPE} interactions from "
                f"{self.users:,} users on {self.items:,} items{repeats} (from {self.source})")


def read_sequences(source: Path | str, layout: str = "lines") -> dict[str, list[str]]:
    """Each user's items in time order, as the file lists them (``layout``: see the
    module docstring)."""
    if layout not in LAYOUTS:
        raise SequencesFormatError(f"layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    source = Path(source)
    if not source.is_file():
        raise SequencesFormatError(f"{source} does not exist or is not a file")
    sequences: dict[str, list[str]] = {}
    try:
        with open(source, encoding="utf-8-sig") as f:
            _read_lines(f, source, sequences, pairs=layout == "pairs")
    except UnicodeDecodeError as exc:
        raise SequencesFormatError(
            f"{source} is not UTF-8 text (byte {exc.start}): is this a sequences "
            f"file?") from None
    if not sequences:
        raise SequencesFormatError(f"{source} is empty")
    return sequences


def _read_lines(f: Any, source: Path, sequences: dict[str, list[str]], *,
                pairs: bool) -> None:
    for number, line in enumerate(iter(lambda: f.readline(MAX_LINE_CHARS + 1), ""),
                                  start=1):
        if len(line) > MAX_LINE_CHARS:
            raise SequencesFormatError(
                f"{source}:{number}: a line longer than {MAX_LINE_CHARS:,} characters; "
                f"is this a sequences file?")
        fields = line.split()
        if not fields:
            continue
        user, items = fields[0], fields[1:]
        if pairs:
            if len(fields) != 2:
                raise SequencesFormatError(
                    f"{source}:{number}: {len(fields)} fields; each line of the pairs "
                    f"layout is 'USER ITEM'")
            sequences.setdefault(user, []).append(items[0])
            continue
        if not items:
            raise SequencesFormatError(
                f"{source}:{number}: user {user!r} has no item; each line is "
                f"'USER ITEM ITEM ...'")
        if len(items) > MAX_LINE_ITEMS:
            raise SequencesFormatError(
                f"{source}:{number}: {len(items):,} items on one line (at most "
                f"{MAX_LINE_ITEMS:,}); is this a sequences file?")
        if user in sequences:
            raise SequencesFormatError(
                f"{source}:{number}: user {user!r} has a second line; each user's "
                f"items must be on one line, in time order (a file of 'USER ITEM' lines, "
                f"as SASRec ships its data, is the pairs layout)")
        sequences[user] = items


def convert_sequences(source: Path | str, out_dir: Path | str,
                      layout: str = "lines") -> SequencesReport:
    """Write ``out_dir/interactions.csv`` (and its schema) from a sequences file.

    Rows are written in time order; a user's k-th of n items is stamped
    ``SNAPSHOT_TIMESTAMP - (n - k)``.
    """
    sequences = read_sequences(source, layout)
    rows = [(SNAPSHOT_TIMESTAMP - (len(items) - k), user, item)
            for user, items in sequences.items() for k, item in enumerate(items, start=1)]
    rows.sort(key=lambda r: r[0])  # stable: ties keep the file's user order
    out = Path(out_dir)
    stale = stale_dataset_files(out, ("interactions.csv",))
    if stale:
        raise SequencesFormatError(
            f"{out} already holds {', '.join(stale)}: they would be read with the converted "
            f"interactions; convert into an empty directory")
    path = out / CSV_FILES["interactions"]
    try:
        write_interactions(out, ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"],
                           ((user, item, ts, REVIEW_EVENT_TYPE) for ts, user, item in rows))
    except OSError as exc:
        raise SequencesFormatError(f"cannot write {path}: {exc}") from None
    return SequencesReport(
        source=str(source), interactions=len(rows), users=len(sequences),
        items=len({item for items in sequences.values() for item in items}),
        repeats=sum(len(items) - len(set(items)) for items in sequences.values()),
        path=path,
    )
