"""Amazon Personalize's bulk CSV datasets: read, validate, import into the event store, export.

A data directory holds ``interactions.csv``, ``items.csv`` and ``users.csv`` in
Personalize's bulk format (a header row of field names), optionally each dataset's Avro
schema as ``<dataset>.schema.json`` (else the defaults of :mod:`recsys.schemas`), and
``impressions.csv`` (USER_ID, TIMESTAMP, IMPRESSION, RECOMMENDATION_ID): impression-only
events, which Personalize has no bulk format for and this project keeps beside the rest,
and ``deleted_polls.csv`` (ITEM_ID, AUTHOR_ID, DELETED_BY, DELETED_AT): the tombstones of
deleted polls, so that a store restored from an export keeps their ids reserved. Neither
is a Personalize dataset: never give them to Amazon.

Validation reads every file completely and reports every problem as ``file:line: reason``
before anything is written, so a failed import changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hunchio.lines import NotUtf8, utf8_lines
from hunchio.values import (
    MAX_INTEGER_CHARS,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    NUMBER,
    parse_integer,
)
from recsys.admission import (
    EventRules,
    canonical_event_type,
    check_age,
    check_creation_timestamp,
    check_no_control,
    check_printable,
    check_timestamp,
)
from recsys.errors import DatasetValidationError, HunchError, InvalidEvent
from recsys.event_stores import describe_url
from recsys.events import (
    Impression,
    Interaction,
    LeftOut,
    PollDeletion,
    check_deletion,
    check_storable,
    distinct_impressions,
    without_polls,
)
from recsys.schemas import (
    CSV_FILES,
    DEFAULT_SCHEMAS,
    MAX_CATEGORICAL_LENGTH,
    MAX_ID_LENGTH,
    MAX_IMPRESSION_LENGTH,
    MAX_TEXTUAL_LENGTH,
    DatasetSchema,
    Field,
    load_schema,
    write_schema,
)

IMPRESSIONS_FILE = "impressions.csv"
IMPRESSIONS_COLUMNS = ("USER_ID", "TIMESTAMP", "IMPRESSION", "RECOMMENDATION_ID")
# Interactions may carry only Personalize's reserved columns: the event store has no
# place for custom interaction fields yet.
_INTERACTION_COLUMNS = {f.name for f in DEFAULT_SCHEMAS["interactions"].fields}
# Tombstones (events.PollDeletion): what `hunch data export` writes of each deleted poll,
# what an import stores first. AUTHOR_ID is empty for a poll imported events named
# without a record.
DELETED_POLLS_FILE = "deleted_polls.csv"
DELETED_POLLS_COLUMNS = ("ITEM_ID", "AUTHOR_ID", "DELETED_BY", "DELETED_AT")
_ID_COLUMNS = {"USER_ID", "ITEM_ID", "RECOMMENDATION_ID", "DELETED_BY"}
# Ids follow the live API's rules (recsys.admission): no surrounding whitespace (" u1 "
# became a second user), no control or deceptive invisible character (ESC in an id
# reached terminals through `hunch recommend`). '|' is allowed where the API allows it
# (user ids such as "google-oauth2|1093", recommendation ids), not in poll ids.
_PRINTABLE_COLUMNS = _ID_COLUMNS | {"AUTHOR_ID"}
# A tag: '<', then up to 2,000 characters that are neither '<' nor '>', then '>'. Not
# '[^>]': from each '<' that scanned on over later '<'s, so a text of 60,000 '<' took
# 2,000 steps per character (a second per upsertPoll, which slowed every request of
# the worker); stopping at the next '<' keeps the scan linear. The cost: a tag whose
# quoted attribute holds a '<' (title="a<b") is left partly in the text. Letting quotes
# hold one would bring the quadratic scan back ('<"<"<"...').
_MARKUP = re.compile(r"<[^<>]{0,2000}>")
# Problems are collected up to this many; past it we keep counting but stop storing text.
_MAX_STORED_PROBLEMS = 1000

# Poll text and comments can exceed csv's default 128 KiB field limit only if malformed,
# but a textual field may legitimately be 20,000 characters before cleaning.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class MissingDataset(HunchError):
    """A required dataset file is absent from the directory."""


@dataclass
class Datasets:
    """The validated contents of a data directory, typed."""

    interactions: list[Interaction]
    items: dict[str, dict[str, Any]]
    users: dict[str, dict[str, Any]]
    impressions: list[Impression]
    schemas: dict[str, DatasetSchema]
    fingerprint: str = ""
    # (user, event id) -> the id older code derived from the row as written, for rows
    # whose EVENT_TYPE was not in its stored spelling (" hunch "): an import skips the
    # row when the store holds that id, so re-importing an old file adds nothing.
    legacy_event_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    # Rows that repeat an earlier row's event (the same user, poll, type, time, value,
    # list and recommendation): kept once. A file has no EVENT_ID column, so two
    # comments stored in one second export as two such rows.
    repeated_rows: int = 0
    # deleted_polls.csv: an import stores them first; training, evaluation and the
    # analyses read the rest as if these polls had never been (without_deleted), as
    # training reads a store.
    deletions: list[PollDeletion] = field(default_factory=list)
    # Set by without_deleted: what it left out of the events (None: not applied yet),
    # and how many items.csv rows.
    left_out: LeftOut | None = None
    items_left_out: int = 0

    def without_deleted(self) -> Datasets:
        """The directory as if its deleted polls had never been, as training reads a
        store (events.without_polls): their items.csv rows, their interactions, their
        ids in impression lists (an impression event left showing nothing is dropped).
        Counted in ``left_out`` and ``items_left_out``; applying it again changes nothing."""
        if self.left_out is not None:
            return self
        deleted = {d.item_id for d in self.deletions}
        left_out = LeftOut()
        if not deleted:
            return replace(self, left_out=left_out)
        items = {k: v for k, v in self.items.items() if k not in deleted}
        return replace(self, interactions=list(without_polls(self.interactions, deleted,
                                                             left_out)),
                       items=items, impressions=list(without_polls(self.impressions,
                                                                   deleted, left_out)),
                       left_out=left_out, items_left_out=len(self.items) - len(items))

    def left_out_counts(self) -> dict[str, int]:
        """:meth:`left_out_note` as numbers, for machine-readable output (all 0 when the
        directory has no deleted_polls.csv)."""
        left = self.left_out or LeftOut()
        return {"deleted_polls": len(self.deletions), "items": self.items_left_out,
                "interactions": left.interactions, "impression_events": left.impressions,
                "impression_lists_read_without_them": left.lists}

    def left_out_note(self) -> str:
        """For a command's output: what :meth:`without_deleted` left out ("" when the
        directory has no deleted_polls.csv)."""
        if not self.deletions:
            return ""
        left = self.left_out or LeftOut()
        return (f"note: left out {len(self.deletions):,} deleted polls ({DELETED_POLLS_FILE}) "
                "as training from the store does: "
                f"{self.items_left_out:,} polls of items.csv, {left.interactions:,} "
                f"interactions and {left.impressions:,} impression events that showed only "
                f"deleted polls; {left.lists:,} impression lists were read without them")

    def training_data(self):
        from recsys.recipes.base import TrainingData

        # A poll repeated in one list counts once (events.distinct_impressions), as the
        # stores keep lists: `hunch train --data DIR` trains on what an import stores.
        # replace() keeps each event's id, derived from the list as written.
        live = self.without_deleted()
        return TrainingData(
            interactions=[e if len(set(e.impression)) == len(e.impression)
                          else replace(e, impression=distinct_impressions(e.impression))
                          for e in live.interactions],
            items=live.items,
            users=self.users,
            impressions=[m if len(set(m.item_ids)) == len(m.item_ids)
                         else replace(m, item_ids=distinct_impressions(m.item_ids))
                         for m in live.impressions],
        )

    def describe(self) -> str:
        repeated = (f" ({self.repeated_rows:,} more rows repeated an earlier row's event "
                    "and were kept once)" if self.repeated_rows else "")
        deleted = f", {len(self.deletions):,} deleted polls" if self.deletions else ""
        return (
            f"{len(self.interactions):,} interactions, {len(self.impressions):,} impression "
            f"events, {len(self.items):,} polls, {len(self.users):,} users{deleted}{repeated}"
        )


@dataclass
class _Problems:
    """Collects ``file:line: reason`` problems across every file of a directory."""

    messages: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, file: str, line: int, reason: str) -> None:
        self.count += 1
        if len(self.messages) < _MAX_STORED_PROBLEMS:
            self.messages.append(f"{file}:{line}: {reason}")

    def raise_if_any(self) -> None:
        if self.count:
            raise DatasetValidationError(list(self.messages), total=self.count)


def clean_text(value: str) -> str:
    """Personalize's treatment of textual fields: markup and extra whitespace stripped,
    then cut at 20,000 characters."""
    value = _MARKUP.sub(" ", value)
    # Each run of whitespace to one space, none at the ends: split() knows the same
    # whitespace as the regex \s, in a fifth of re.sub's time (0.1 s for 50k poll texts).
    return " ".join(value.split())[:MAX_TEXTUAL_LENGTH]


def _integer(raw: str, column: str) -> tuple[Any, str | None]:
    if len(raw) > MAX_INTEGER_CHARS:
        return None, f"{column} {raw[:40]!r}... is not an integer (digits 0-9)"
    value = parse_integer(raw)
    if value is None:
        return None, f"{column} {raw[:40]!r} is not an integer (digits 0-9)"
    return value, None


def _timestamp_in_range(column: str, value: int) -> None:
    """check_timestamp in the (column, value) shape of the range checks: it names the
    API's field ("timestamp ... is not a date"), as the import's message always has."""
    check_timestamp(value)


# Integer fields with a range beyond their type. An event's TIMESTAMP is checked again
# with the whole event (check_storable, the history rule); checked here as a cell, a
# row that is not a date is refused once, before an event is built from it (1e19
# overflowed in the recipes' clock).
def _deletion_time_in_range(column: str, value: int) -> None:
    if not MIN_TIMESTAMP <= value <= MAX_TIMESTAMP:
        raise InvalidEvent(f"{column} {value} is not a date (years 1 to 9999); write the "
                           "deletion's time in epoch seconds")


_RANGE_CHECKS = {"CREATION_TIMESTAMP": check_creation_timestamp, "AGE": check_age,
                 "TIMESTAMP": _timestamp_in_range,  # a date: years 1 to 9999
                 "DELETED_AT": _deletion_time_in_range}
_NON_FINITE = {"nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"}


def _convert(f: Field, raw: str, column: str) -> tuple[Any, str | None]:
    """Typed value of one cell, or an error reason."""
    if f.type in ("long", "int"):
        value, reason = _integer(raw, column)
        if reason is None and column in _RANGE_CHECKS:
            try:
                _RANGE_CHECKS[column](column, value)
            except InvalidEvent as exc:
                return None, str(exc)
        return value, reason
    if f.type in ("float", "double"):
        if not NUMBER.fullmatch(raw) and raw.strip().lower() not in _NON_FINITE:
            return None, f"{column} {raw[:40]!r} is not a number"
        value = float(raw)
        if not math.isfinite(value):
            return None, f"{column} {raw[:40]!r} is not a finite number"
        return value, None
    if f.type == "boolean":
        lowered = raw.lower()
        if lowered in ("true", "false"):
            return lowered == "true", None
        return None, f"{column} {raw[:40]!r} is not true or false"
    # string
    try:
        return _string(f, raw, column)
    except InvalidEvent as exc:  # the API's checks (recsys.admission) say what to fix
        return None, str(exc)


def _string(f: Field, raw: str, column: str) -> tuple[Any, str | None]:
    if f.textual:
        # As upsertPoll: tabs and newlines are folded into spaces, no other control
        # character (NUL, ESC) is taken.
        check_no_control(column, raw, allow_whitespace=True)
        return clean_text(raw), None
    if column in _ID_COLUMNS and len(raw) > MAX_ID_LENGTH:
        return None, f"{column} is {len(raw)} characters long; ids may have at most {MAX_ID_LENGTH}"
    if column in _PRINTABLE_COLUMNS:
        check_printable(column, raw)
    if column == "ITEM_ID" and "|" in raw:
        # IMPRESSION lists join item ids with '|': such a poll could be served but never
        # reported seen (the mutations refuse it as a new poll id too).
        return None, (f"ITEM_ID {raw[:40]!r} contains '|', which separates the item ids "
                      "of an IMPRESSION list; choose ids without it")
    if column == "IMPRESSION" and len(raw) > MAX_IMPRESSION_LENGTH:
        return None, (
            f"IMPRESSION is {len(raw)} characters long; at most {MAX_IMPRESSION_LENGTH} "
            "(send fewer item ids)"
        )
    if column == "IMPRESSION":
        for part in raw.split("|"):  # poll ids, as ITEM_ID (empty parts are skipped)
            if part:
                check_printable("IMPRESSION item id", part)
    if f.categorical and len(raw) > MAX_CATEGORICAL_LENGTH:
        return None, (
            f"{column} is {len(raw)} characters long; categorical values may have at most "
            f"{MAX_CATEGORICAL_LENGTH}"
        )
    if f.categorical:
        for part in raw.split("|"):  # as upsertPoll's categories: "  SPORTS " is not SPORTS
            if part:
                check_printable(f"{column} value", part)
    return raw, None


def _cell(f: Field, raw: str) -> tuple[Any, str | None]:
    """Typed value of one cell (None when empty), or why the import refuses it."""
    if raw == "":
        return None, None if f.nullable else f"{f.name} is empty but required"
    return _convert(f, raw, f.name)


def export_problems(record: dict[str, Any], schema: DatasetSchema = DEFAULT_SCHEMAS["items"],
                    ) -> list[str]:
    """Why the import would refuse ``record``'s fields once ``hunch data export`` wrote
    them (the import's own cell checks), empty when they round-trip. Writers other than
    the import (upsertPoll) call it, so the catalog can always be exported and imported
    back; fields ``record`` leaves out are not checked (an edit keeps the stored ones)."""
    return [reason for f in schema.fields if f.name in record
            if (reason := _cell(f, _format(record[f.name]))[1])]


def _present(path: Path, problems: _Problems) -> bool:
    """Whether an optional dataset file is there. A symbolic link to nothing is a
    mistake, not an absent file: read as absent, a full import wiped every stored user."""
    if path.exists():
        return True
    if path.is_symlink():
        problems.add(path.name, 1, f"a symbolic link to {path.readlink()}, which does not "
                                   "exist; fix the link or remove it")
    return False


def _some(names: list[str], shown: int = 20) -> str:
    """Names for a message: the first ``shown`` and how many more."""
    listed = ", ".join(repr(n) if n != n.strip() or not n else n for n in names[:shown])
    return listed + (f" and {len(names) - shown:,} more" if len(names) > shown else "")


def _read_rows(
    path: Path, schema: DatasetSchema, problems: _Problems
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, typed record) for each valid row; record problems for the rest."""
    name = path.name
    undecodable: list[int] = []  # the line that is not UTF-8, once met (reading stops)

    def not_utf8(at: NotUtf8) -> None:
        undecodable.append(at.line)
        problems.add(name, at.line, f"not UTF-8 (byte 0x{at.byte:02x} at position "
                                    f"{at.position} of the line); save the file as UTF-8")

    with path.open("rb") as fh:
        reader = csv.reader(utf8_lines(fh, not_utf8))
        try:
            header = next(reader)
        except StopIteration:
            if not undecodable:
                problems.add(name, 1, "the file is empty; expected a header row")
            return
        except csv.Error as exc:
            problems.add(name, 1, f"unreadable header ({exc})")
            return
        header = [h.strip() for h in header]
        known = set(schema.names)
        unknown = [h for h in header if h not in known]
        missing = [r for r in schema.required if r not in set(header)]
        # Counted once (header.count per column was quadratic: a 100k-column header
        # took minutes to refuse).
        duplicated = sorted(h for h, n in Counter(header).items() if n > 1)
        if unknown:
            # One column holding ';' or tabs: another separator (Excel in many locales)
            separator = next((f" (separated by {sep!r}? save the file with commas)"
                              for sep in (";", "\t") if len(header) == 1 and sep in header[0]),
                             "")
            problems.add(name, 1, f"unknown column(s) {_some(unknown)}; the {schema.dataset} "
                                  f"schema declares {', '.join(schema.names)}{separator}")
        if missing:
            problems.add(name, 1, f"missing required column(s) {', '.join(missing)}")
        if duplicated:
            problems.add(name, 1, f"duplicated column(s) {_some(duplicated)}")
        if unknown or missing or duplicated:
            return
        fields = [schema.field(h) for h in header]
        width = len(header)
        line = 1
        try:
            for row in reader:
                first, line = line + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    continue  # a blank line, or a row of empty cells (Excel leaves them)
                if len(row) != width:
                    # A row read over several lines holds a quoted newline: most often a
                    # quote opened and never closed, which swallows the lines after it.
                    spans = (f" (the row runs from line {first} to line {line}: a quote "
                             "opened and not closed?)" if line > first else "")
                    problems.add(name, line, f"expected {width} fields, found "
                                             f"{len(row)}{spans}")
                    continue
                record: dict[str, Any] = {}
                ok = True
                for f, raw in zip(fields, row):
                    value, reason = _cell(f, raw)
                    if reason:
                        problems.add(name, line, reason)
                        ok = False
                    record[f.name] = value
                if ok:
                    yield line, record
        except csv.Error as exc:
            problems.add(name, line + 1, f"unreadable CSV ({exc})")


def file_problems(path: Path, schema: DatasetSchema, key: str | None = None) -> list[str]:
    """Every ``file:line: reason`` the import would report for ``path`` under ``schema``
    (its header, each row's cells, a ``key`` repeated), for writers that produce a
    dataset file from another one (``hunch graph cluster --users-csv``)."""
    problems = _Problems()
    first_line: dict[Any, int] = {}
    for line, rec in _read_rows(path, schema, problems):
        if key is None:
            continue
        if rec[key] in first_line:
            problems.add(path.name, line,
                         f"{key} {rec[key]!r} already appeared on line {first_line[rec[key]]}")
        else:
            first_line[rec[key]] = line
    return problems.messages


def _split_ids(value: str | None, intern: Callable[[str], str] = str) -> tuple[str, ...]:
    # Repeats kept: an event without EVENT_ID is identified by its contents, the list as
    # written included, so importing the same file again stays a no-op; training_data()
    # drops them.
    if not value:
        return ()
    # ``intern``: one string per distinct id (see load_directory).
    return tuple(intern(part) for part in value.split("|") if part)


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _impressions_schema() -> DatasetSchema:
    return DatasetSchema(
        "interactions",
        (
            Field("USER_ID", "string"),
            Field("TIMESTAMP", "long"),
            Field("IMPRESSION", "string"),
            Field("RECOMMENDATION_ID", "string", nullable=True),
        ),
    )


def _deleted_polls_schema() -> DatasetSchema:
    return DatasetSchema(
        "deleted polls",  # type: ignore[arg-type]  # named in messages only
        (
            Field("ITEM_ID", "string"),
            Field("AUTHOR_ID", "string", nullable=True),
            Field("DELETED_BY", "string"),
            Field("DELETED_AT", "long"),
        ),
    )


def _read_deletions(path: Path, problems: _Problems,
                    rules: EventRules | None = None) -> list[PollDeletion]:
    """deleted_polls.csv's tombstones: each cell checked as the other files' (ids as
    everywhere), each tombstone as the stores check it (with ``rules``, DELETED_AT by
    their history rule, as an imported event's time), an ITEM_ID once."""
    deletions: list[PollDeletion] = []
    first_line: dict[str, int] = {}
    for line, rec in _read_rows(path, _deleted_polls_schema(), problems):
        deletion = PollDeletion(rec["ITEM_ID"], rec.get("AUTHOR_ID"), rec["DELETED_BY"],
                                rec["DELETED_AT"])
        try:
            check_deletion(deletion)
            if rules is not None:
                rules.check_deletion_history(deletion.deleted_at)
        except InvalidEvent as exc:
            problems.add(path.name, line, str(exc))
            continue
        if deletion.item_id in first_line:
            problems.add(path.name, line, f"ITEM_ID {deletion.item_id!r} already appeared "
                                          f"on line {first_line[deletion.item_id]}; keep "
                                          "one tombstone per poll")
            continue
        first_line[deletion.item_id] = line
        deletions.append(deletion)
    return deletions


def load_directory(directory: Path | str, rules: EventRules | None = None, *,
                   require_interactions: bool = True) -> Datasets:
    """Read and validate a Personalize-format data directory.

    Raises :class:`DatasetValidationError` listing every problem (``file:line: reason``)
    when anything is wrong, :class:`MissingDataset` when interactions.csv is absent.
    EVENT_TYPE is stored as :func:`canonical_event_type` spells it; an event repeated
    (the same id, however its type was spelled) is kept once, as the stores keep it.
    Every event must be one the stores would write; with ``rules``, also one their
    history rule admits, a poll's CREATION_TIMESTAMP must not be in the future and a
    tombstone's DELETED_AT must pass the history rule (EventRules.check_deletion_history).
    """
    directory = Path(directory)
    problems = _Problems()
    schemas: dict[str, DatasetSchema] = {}
    for dataset in DEFAULT_SCHEMAS:
        schemas[dataset] = load_schema(directory, dataset)  # type: ignore[arg-type]
    extra = [f.name for f in schemas["interactions"].fields if f.name not in _INTERACTION_COLUMNS]
    if extra:
        problems.add("interactions.schema.json", 1,
                     f"custom interaction field(s) {', '.join(extra)} are not supported; "
                     "keep only Personalize's reserved interaction fields")

    interactions_path = directory / CSV_FILES["interactions"]
    has_interactions = interactions_path.exists()
    if not has_interactions and (require_interactions or not any(
            (directory / name).exists() for name in (CSV_FILES["items"], CSV_FILES["users"],
                                                     IMPRESSIONS_FILE, DELETED_POLLS_FILE))):
        raise MissingDataset(
            f"{interactions_path} not found; a data directory needs at least interactions.csv"
            + ("" if require_interactions else
               " (an incremental import also takes items.csv, users.csv, impressions.csv "
               "or deleted_polls.csv alone)"))
    present = [interactions_path] if has_interactions else []

    # First: the tombstones decide which items.csv rows an import skips.
    deletions: list[PollDeletion] = []
    deletions_path = directory / DELETED_POLLS_FILE
    if _present(deletions_path, problems):
        present.append(deletions_path)
        deletions = _read_deletions(deletions_path, problems, rules)

    # One string per distinct user, poll and type, however often rows repeat it: each
    # its own string held a 1.5M-event load at 2.1 GB (1.1 GB so). A dict of this load,
    # not sys.intern, whose strings Python 3.12 never frees.
    strings: dict[str, str] = {}

    def _intern(value: str) -> str:
        return strings.setdefault(value, value)

    interactions: dict[tuple[str, str], Interaction] = {}
    legacy_event_ids: dict[tuple[str, str], str] = {}
    repeated_rows = 0
    rows = (_read_rows(interactions_path, schemas["interactions"], problems)
            if has_interactions else ())
    for line, rec in rows:
        written = rec.get("EVENT_TYPE") or ""
        event = Interaction(
            user_id=_intern(rec["USER_ID"]),
            item_id=_intern(rec["ITEM_ID"]),
            event_type=_intern(canonical_event_type(written)),
            timestamp=rec["TIMESTAMP"],
            event_value=rec.get("EVENT_VALUE"),
            impression=_split_ids(rec.get("IMPRESSION"), _intern),
            recommendation_id=rec.get("RECOMMENDATION_ID"),
        )
        if not _admissible(event, rules, interactions_path.name, line, problems):
            continue
        key = (event.user_id, event.event_id)
        if key in interactions:
            repeated_rows += 1
            continue  # "HUNCH" and "hunch" rows otherwise alike are one vote
        interactions[key] = event
        if written != event.event_type:
            # The id derives from the content, the type as stored: the id older code
            # gave this row (from the type as written) is kept to skip it if stored.
            legacy_event_ids[key] = replace(event, event_type=written, event_id="").event_id

    items: dict[str, dict[str, Any]] = {}
    users: dict[str, dict[str, Any]] = {}
    for dataset, target, key in (("items", items, "ITEM_ID"), ("users", users, "USER_ID")):
        path = directory / CSV_FILES[dataset]
        if not _present(path, problems):
            continue
        present.append(path)
        first_line: dict[str, int] = {}
        for line, rec in _read_rows(path, schemas[dataset], problems):
            ident = rec[key]
            created = rec.get("CREATION_TIMESTAMP") if dataset == "items" else None
            if rules is not None and created is not None:
                try:
                    rules.check_creation_history(created)
                except InvalidEvent as exc:
                    problems.add(path.name, line, str(exc))
                    continue
            if ident in first_line:
                problems.add(path.name, line,
                             f"{key} {ident!r} already appeared on line {first_line[ident]}")
                continue
            first_line[ident] = line
            target[ident] = rec

    impressions: dict[tuple[str, str], Impression] = {}
    impressions_path = directory / IMPRESSIONS_FILE
    if _present(impressions_path, problems):
        present.append(impressions_path)
        for line, rec in _read_rows(impressions_path, _impressions_schema(), problems):
            shown = Impression(
                user_id=_intern(rec["USER_ID"]),
                item_ids=_split_ids(rec["IMPRESSION"], _intern),
                timestamp=rec["TIMESTAMP"],
                recommendation_id=rec.get("RECOMMENDATION_ID"),
            )
            if not _admissible(shown, rules, IMPRESSIONS_FILE, line, problems):
                continue
            if (shown.user_id, shown.event_id) in impressions:
                repeated_rows += 1
            impressions.setdefault((shown.user_id, shown.event_id), shown)

    problems.raise_if_any()
    # Stable time order: the store and the recipes rely on it.
    return Datasets(sorted(interactions.values(), key=lambda e: e.timestamp), items, users,
                    sorted(impressions.values(), key=lambda e: e.timestamp), schemas,
                    _fingerprint(present), legacy_event_ids, repeated_rows, deletions)


def _admissible(event: Interaction | Impression, rules: EventRules | None, file: str,
                line: int, problems: _Problems) -> bool:
    """Whether the store will take ``event`` (and, with ``rules``, their history rule:
    time floor, not in the future, a known type); if not, the reason is noted at
    ``file:line``, so one run names every refused line, not the first the store meets."""
    try:
        check_storable(event)
        if rules is not None:
            rules.check_history(event)
    except InvalidEvent as exc:
        problems.add(file, line, str(exc))
        return False
    return True


@dataclass
class ImportReport:
    directory: Path
    db_path: Path | str  # the store's path or URL (see recsys.event_stores)
    mode: str
    datasets: Datasets
    written: Any = None  # the store's ImportCounts: events new to it (the rest it held)
    without_record: int = 0  # interactions on polls the catalog holds no record of
    kept_deleted: int = 0  # items.csv rows of deleted polls: skipped, they stay deleted

    def describe(self) -> str:
        new = ""
        if self.written is not None:
            d = self.datasets
            skipped = self.written.deleted
            held = (len(d.interactions) - self.written.interactions - skipped.interactions
                    + len(d.impressions) - self.written.impressions - skipped.impressions)
            new = (f"; {self.written.interactions:,} interactions and "
                   f"{self.written.impressions:,} impression events were new, "
                   f"{held:,} already stored or counted (a repeated vote)")
        note = (f"\nnote: {self.without_record:,} interactions name polls that neither "
                "items.csv nor the store has a record of: they train the models, and the feed "
                "can show such a poll by its id only; add the polls to items.csv"
                if self.without_record else "")
        if self.datasets.deletions:
            stored = "" if self.written is None else (
                f" ({self.written.deletions:,} new to the store, "
                f"{len(self.datasets.deletions) - self.written.deletions:,} deleted here "
                "already)")
            note += (f"\nnote: {len(self.datasets.deletions):,} deleted polls' tombstones "
                     f"read from {DELETED_POLLS_FILE}{stored}: their ids stay reserved and "
                     "nothing of them is served or trained")
        if self.kept_deleted:
            note += (f"\nnote: {self.kept_deleted:,} polls of items.csv were deleted "
                     "(by their author or moderation): they stay deleted, their rows were "
                     "skipped")
        skipped = None if self.written is None else self.written.deleted
        if skipped:  # as a live event on a deleted poll is refused
            note += (f"\nnote: {skipped.interactions:,} interactions on deleted polls and "
                     f"{skipped.impressions:,} impression events that showed only deleted "
                     "polls were skipped, and "
                     f"{skipped.lists:,} events were stored without the deleted polls of "
                     "their impression list (deleted in the store or by "
                     f"{DELETED_POLLS_FILE}): nothing of a deleted poll is stored again")
        return (
            f"read {self.datasets.describe()} from {self.directory} into "
            f"{describe_url(self.db_path)} ({self.mode}{new}){note}"
        )


def import_directory(
    directory: Path | str, db_path: Path | str, *, mode: str = "incremental",
    progress: bool = False, rules: EventRules | None = None,
) -> ImportReport:
    """Validate ``directory`` completely, then write it to the event store in one
    transaction: all of it or, on any problem, nothing. With ``rules``, every event must
    also pass their history rule (time floor, not in the future, known event type).
    ``db_path`` is a SQLite file or any store URL :func:`open_event_store` takes."""
    from recsys.event_stores import open_event_store

    if mode not in ("incremental", "full"):
        raise HunchError(f"unknown import mode {mode!r}; use 'incremental' or 'full'")
    directory = Path(directory)
    # Incremental imports may bring users.csv alone (the labels `hunch graph cluster`
    # writes), items.csv or impressions; a full one replaces everything, so it needs
    # interactions (one without would empty the store of events).
    data = _with_status(progress, f"validating {directory}",
                        lambda: load_directory(directory, rules,
                                               require_interactions=mode == "full"))
    with open_event_store(db_path, rules) as store:
        without_record = _polls_without_record(data, store, mode)
        # A deleted poll stays deleted: the store skips its row (tombstones outlive
        # full imports too); an older export brought back would otherwise restore it.
        # The directory's own tombstones are stored first, so their rows go the same way.
        kept_deleted = len({d.item_id for d in data.deletions}.intersection(data.items)
                           .union(store.deleted_item_ids(data.items.keys())))
        fresh = data.interactions
        if data.legacy_event_ids and mode == "incremental":
            stored = store.stored_event_ids(
                (user, legacy) for (user, _), legacy in data.legacy_event_ids.items())
            if stored:  # held under the id older code gave them: already stored
                fresh = [e for e in data.interactions
                         if (e.user_id, data.legacy_event_ids.get((e.user_id, e.event_id)))
                         not in stored]
        written = _with_status(
            progress, f"writing to {describe_url(db_path)}",
            lambda: store.import_bulk(
                fresh, data.impressions, data.items.values(), data.users.values(), mode=mode,
                deletions=data.deletions,
            ),
        )
    return ImportReport(directory, db_path, mode, data, written, without_record,
                        kept_deleted)


def _polls_without_record(data: Datasets, store: Any, mode: str) -> int:
    """How many of the dataset's interactions name a poll neither its items.csv nor (in
    incremental mode) the store holds: Personalize takes them, and they train the
    models, but the feed has nothing to show for such a poll but its id. Counted, not
    refused: public data converted by ``hunch data convert-ratings`` leaves out the
    movies without a readable year, and refusing them broke that documented path."""
    # Deleted polls are not counted: the import skips their events.
    unknown = ({e.item_id for e in data.interactions} - data.items.keys()
               - {d.item_id for d in data.deletions})
    if unknown:
        unknown -= set(store.deleted_item_ids(sorted(unknown)))
    if unknown and mode == "incremental":
        unknown = set(store.unknown_item_ids(sorted(unknown)))
    return sum(1 for e in data.interactions if e.item_id in unknown) if unknown else 0


def _with_status(progress: bool, message: str, work):
    if not progress:
        return work()
    from rich.console import Console

    with Console(stderr=True).status(message):
        return work()


def _format(value: Any) -> str:
    return "" if value is None else str(value)


def _columns_for(schema: DatasetSchema, records: list[dict[str, Any]]) -> DatasetSchema:
    """The schema the stored ``records`` export under, so that the export imports back
    (the store keeps records, not the schema they were imported with): the default
    schema's fields, nullable where some record lacks one (a custom schema without
    AUTHOR_ID imported fine, and its export was refused), plus every field the records
    carry beyond it: numeric (long or float) when every value is a number, else a
    nullable categorical string, so nothing imported is lost on export."""
    present: dict[str, int] = {}
    numeric: dict[str, str] = {}  # field -> "long" | "float" while every value is a number
    for rec in records:
        for name, value in rec.items():
            if value is None or value == "":
                continue
            present[name] = present.get(name, 0) + 1
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                numeric[name] = "string"
            elif numeric.get(name) != "string":
                kind = "long" if isinstance(value, int) else "float"
                numeric[name] = "float" if "float" in (kind, numeric.get(name)) else kind
    known = set(schema.names)
    fields = [f if f.nullable or present.get(f.name, 0) == len(records)
              else replace(f, nullable=True) for f in schema.fields]
    for name in present:
        if name in known:
            continue
        kind = numeric.get(name, "string")
        fields.append(Field(name, kind, nullable=True, categorical=kind == "string"))
    return DatasetSchema(schema.dataset, tuple(fields))


@dataclass
class ExportReport:
    directory: Path
    counts: dict[str, int]
    deleted: int = 0  # deleted polls whose events were left out

    def describe(self) -> str:
        parts = ", ".join(f"{n:,} {k}" for k, n in self.counts.items())
        note = (f"; left out the events of {self.deleted:,} deleted poll(s) (they stay in "
                "the store as history; an export is read as training reads the store) and "
                f"wrote their tombstones to {DELETED_POLLS_FILE}, which keeps their ids "
                "reserved wherever the directory is imported (not an Amazon dataset: "
                "never give it to Amazon)"
                if self.deleted else "")
        return f"exported {parts} to {self.directory}{note}"


class ExportFailed(HunchError):
    """The export could not be written where asked (the directory is left as it was)."""


def export_directory(db_path: Path | str, directory: Path | str) -> ExportReport:
    """Write the stored datasets to ``directory`` in Personalize's bulk CSV format, with
    each dataset's Avro schema beside it (``db_path``: a file or a store URL).

    All or nothing, like the import: every file is written into a staging folder inside
    ``directory`` first and moved into place only once all are written, so a failed
    export leaves the directory as it was (it once replaced interactions.csv and
    items.csv, then failed on users.csv, leaving a mix of two exports)."""
    import shutil
    import tempfile

    from recsys.event_stores import open_event_store, store_exists

    if not store_exists(db_path):
        # Opened, a missing SQLite file is created empty, and the export then replaced
        # every file of the directory with a header (a mistyped HUNCH_HOME emptied a
        # backup, which a full import then emptied the store from).
        raise ExportFailed(f"no event store at {db_path}: nothing to export (check "
                           "HUNCH_HOME or HUNCH_STORE_URL); nothing was written")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=directory))
    try:
        with open_event_store(db_path) as store:
            # The tombstones first, and the ids they name are the ones left out below:
            # without them a restore freed every deleted id for another upsertPoll.
            deleted: set[str] = set()
            counts["deleted polls"] = _write_csv(
                staging / DELETED_POLLS_FILE, list(DELETED_POLLS_COLUMNS),
                ([d.item_id, d.author_id, d.deleted_by, d.deleted_at]
                 for d in _noting_ids(store.deletions(), deleted)),
            )
            # As training reads the store: a deleted poll's events, exported without its
            # tombstone, brought it back wherever the export was imported (another
            # store, Amazon's interactions dataset), trained on and served by its id.
            schema = DEFAULT_SCHEMAS["interactions"]
            counts["interactions"] = _write_csv(
                staging / CSV_FILES["interactions"],
                schema.names,
                (
                    [e.user_id, e.item_id, e.timestamp, e.event_type or None, e.event_value,
                     "|".join(e.impression) or None, e.recommendation_id]
                    for e in without_polls(store.interactions(), deleted)
                ),
            )
            write_schema(staging, schema)
            for dataset, records in (("items", list(store.items())),
                                     ("users", list(store.users()))):
                schema = _columns_for(DEFAULT_SCHEMAS[dataset], records)
                counts[dataset] = _write_csv(
                    staging / CSV_FILES[dataset],
                    schema.names,
                    ([rec.get(name) for name in schema.names] for rec in records),
                )
                write_schema(staging, schema)
            counts["impression events"] = _write_csv(
                staging / IMPRESSIONS_FILE,
                list(IMPRESSIONS_COLUMNS),
                (
                    [m.user_id, m.timestamp, "|".join(m.item_ids), m.recommendation_id]
                    for m in without_polls(store.impressions(), deleted)
                ),
            )
        counts["deleted polls"] = counts.pop("deleted polls")  # said last, as an aside
        written = sorted(staging.iterdir())
        # Checked before anything moves: a rename onto a directory fails half-way.
        blocked = [f.name for f in written
                   if (directory / f.name).exists() and not (directory / f.name).is_file()]
        if blocked:
            raise ExportFailed(f"cannot export into {directory}: {', '.join(blocked)} "
                               "exist(s) there and are not files; export elsewhere or "
                               "remove them (nothing was written)")
        for f in written:
            f.replace(directory / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(directory, counts, len(deleted))


def _noting_ids(deletions: Iterator[PollDeletion], ids: set[str]) -> Iterator[PollDeletion]:
    for deletion in deletions:
        ids.add(deletion.item_id)
        yield deletion


def _write_csv(path: Path, header: list[str], rows) -> int:
    """Write atomically (temporary file, then rename) so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_format(v) for v in row])
            count += 1
    tmp.replace(path)
    return count
