"""Amazon Personalize's bulk CSV datasets: read, validate, import into the event store, export.

A data directory holds ``interactions.csv``, ``items.csv`` and ``users.csv`` in
Personalize's bulk format (a header row of field names), optionally each dataset's Avro
schema as ``<dataset>.schema.json`` (else the defaults of :mod:`recsys.schemas`), and
``impressions.csv`` (USER_ID, TIMESTAMP, IMPRESSION, RECOMMENDATION_ID): impression-only
events, which Personalize has no bulk format for and this project keeps beside the rest.

Validation reads every file completely and reports every problem as ``file:line: reason``
before anything is written, so a failed import changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from recsys.admission import EventRules
from recsys.errors import DatasetValidationError, HunchError
from recsys.event_stores import describe_url
from recsys.events import Impression, Interaction, distinct_impressions
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
_ID_COLUMNS = {"USER_ID", "ITEM_ID", "RECOMMENDATION_ID"}
_MARKUP = re.compile(r"<[^>]{0,2000}>")
_WHITESPACE = re.compile(r"\s+")
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

    def training_data(self):
        from recsys.recipes.base import TrainingData

        # A poll repeated in one list counts once (events.distinct_impressions), as the
        # stores keep lists: `hunch train --data DIR` trains on what an import stores.
        # replace() keeps each event's id, derived from the list as written.
        return TrainingData(
            interactions=[e if len(set(e.impression)) == len(e.impression)
                          else replace(e, impression=distinct_impressions(e.impression))
                          for e in self.interactions],
            items=self.items,
            users=self.users,
            impressions=[m if len(set(m.item_ids)) == len(m.item_ids)
                         else replace(m, item_ids=distinct_impressions(m.item_ids))
                         for m in self.impressions],
        )

    def describe(self) -> str:
        return (
            f"{len(self.interactions):,} interactions, {len(self.impressions):,} impression "
            f"events, {len(self.items):,} polls, {len(self.users):,} users"
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
    value = _WHITESPACE.sub(" ", value).strip()
    return value[:MAX_TEXTUAL_LENGTH]


def _convert(f: Field, raw: str, column: str) -> tuple[Any, str | None]:
    """Typed value of one cell, or an error reason."""
    if f.type in ("long", "int"):
        try:
            return int(raw), None
        except ValueError:
            try:
                as_float = float(raw)
            except ValueError:
                return None, f"{column} {raw[:40]!r} is not an integer"
            if as_float.is_integer():
                return int(as_float), None
            return None, f"{column} {raw[:40]!r} is not an integer"
    if f.type in ("float", "double"):
        try:
            value = float(raw)
        except ValueError:
            return None, f"{column} {raw[:40]!r} is not a number"
        if not math.isfinite(value):
            return None, f"{column} {raw[:40]!r} is not a finite number"
        return value, None
    if f.type == "boolean":
        lowered = raw.lower()
        if lowered in ("true", "false"):
            return lowered == "true", None
        return None, f"{column} {raw[:40]!r} is not true or false"
    # string
    if f.textual:
        return clean_text(raw), None
    if column in _ID_COLUMNS and len(raw) > MAX_ID_LENGTH:
        return None, f"{column} is {len(raw)} characters long; ids may have at most {MAX_ID_LENGTH}"
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
    if f.categorical and len(raw) > MAX_CATEGORICAL_LENGTH:
        return None, (
            f"{column} is {len(raw)} characters long; categorical values may have at most "
            f"{MAX_CATEGORICAL_LENGTH}"
        )
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


def _read_rows(
    path: Path, schema: DatasetSchema, problems: _Problems
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, typed record) for each valid row; record problems for the rest."""
    name = path.name
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            problems.add(name, 1, "the file is empty; expected a header row")
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            problems.add(name, 1, f"unreadable header ({exc})")
            return
        header = [h.strip() for h in header]
        known = set(schema.names)
        unknown = [h for h in header if h not in known]
        missing = [r for r in schema.required if r not in header]
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if unknown:
            problems.add(name, 1, f"unknown column(s) {', '.join(unknown)}; the {schema.dataset} "
                                  f"schema declares {', '.join(schema.names)}")
        if missing:
            problems.add(name, 1, f"missing required column(s) {', '.join(missing)}")
        if duplicated:
            problems.add(name, 1, f"duplicated column(s) {', '.join(duplicated)}")
        if unknown or missing or duplicated:
            return
        fields = [schema.field(h) for h in header]
        width = len(header)
        line = 1
        try:
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != width:
                    problems.add(name, line, f"expected {width} fields, found {len(row)}")
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
        except (csv.Error, UnicodeDecodeError) as exc:
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


def _split_ids(value: str | None) -> tuple[str, ...]:
    # Repeats kept: an event without EVENT_ID is identified by its contents, the list as
    # written included, so importing the same file again stays a no-op; training_data()
    # drops them.
    if not value:
        return ()
    return tuple(part for part in value.split("|") if part)


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


def load_directory(directory: Path | str) -> Datasets:
    """Read and validate a Personalize-format data directory.

    Raises :class:`DatasetValidationError` listing every problem (``file:line: reason``)
    when anything is wrong, :class:`MissingDataset` when interactions.csv is absent.
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
    if not interactions_path.exists():
        raise MissingDataset(
            f"{interactions_path} not found; a data directory needs at least interactions.csv"
        )
    present = [interactions_path]

    interactions: list[Interaction] = []
    for _, rec in _read_rows(interactions_path, schemas["interactions"], problems):
        interactions.append(
            Interaction(
                user_id=rec["USER_ID"],
                item_id=rec["ITEM_ID"],
                event_type=rec.get("EVENT_TYPE") or "",
                timestamp=rec["TIMESTAMP"],
                event_value=rec.get("EVENT_VALUE"),
                impression=_split_ids(rec.get("IMPRESSION")),
                recommendation_id=rec.get("RECOMMENDATION_ID"),
            )
        )

    items: dict[str, dict[str, Any]] = {}
    users: dict[str, dict[str, Any]] = {}
    for dataset, target, key in (("items", items, "ITEM_ID"), ("users", users, "USER_ID")):
        path = directory / CSV_FILES[dataset]
        if not path.exists():
            continue
        present.append(path)
        first_line: dict[str, int] = {}
        for line, rec in _read_rows(path, schemas[dataset], problems):
            ident = rec[key]
            if ident in first_line:
                problems.add(path.name, line,
                             f"{key} {ident!r} already appeared on line {first_line[ident]}")
                continue
            first_line[ident] = line
            target[ident] = rec

    impressions: list[Impression] = []
    impressions_path = directory / IMPRESSIONS_FILE
    if impressions_path.exists():
        present.append(impressions_path)
        for _, rec in _read_rows(impressions_path, _impressions_schema(), problems):
            impressions.append(
                Impression(
                    user_id=rec["USER_ID"],
                    item_ids=_split_ids(rec["IMPRESSION"]),
                    timestamp=rec["TIMESTAMP"],
                    recommendation_id=rec.get("RECOMMENDATION_ID"),
                )
            )

    problems.raise_if_any()
    # Stable time order: the store and the recipes rely on it.
    interactions.sort(key=lambda e: e.timestamp)
    impressions.sort(key=lambda e: e.timestamp)
    return Datasets(interactions, items, users, impressions, schemas, _fingerprint(present))


@dataclass
class ImportReport:
    directory: Path
    db_path: Path | str  # the store's path or URL (see recsys.event_stores)
    mode: str
    datasets: Datasets

    def describe(self) -> str:
        return (
            f"imported {self.datasets.describe()} from {self.directory} into "
            f"{describe_url(self.db_path)} "
            f"({self.mode})"
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
    data = _with_status(progress, f"validating {directory}", lambda: load_directory(directory))
    if rules is not None:
        problems = (rules.history_problems(data.interactions, CSV_FILES["interactions"])
                    + rules.history_problems(data.impressions, IMPRESSIONS_FILE))
        if problems:
            raise DatasetValidationError(problems[:DatasetValidationError.max_shown],
                                         total=len(problems))
    with open_event_store(db_path, rules) as store:
        _with_status(
            progress, f"writing to {describe_url(db_path)}",
            lambda: store.import_bulk(
                data.interactions, data.impressions, data.items.values(), data.users.values(),
                mode=mode,
            ),
        )
    return ImportReport(directory, db_path, mode, data)


def _with_status(progress: bool, message: str, work):
    if not progress:
        return work()
    from rich.console import Console

    with Console(stderr=True).status(message):
        return work()


def _format(value: Any) -> str:
    return "" if value is None else str(value)


def _columns_for(schema: DatasetSchema, records: list[dict[str, Any]]) -> DatasetSchema:
    """The schema's fields plus any field the stored records carry beyond it (kept as
    nullable categorical strings, so nothing imported is lost on export)."""
    known = set(schema.names)
    extra: list[str] = []
    for rec in records:
        for name in rec:
            if name not in known and name not in extra:
                extra.append(name)
    if not extra:
        return schema
    return DatasetSchema(
        schema.dataset,
        schema.fields + tuple(Field(n, "string", nullable=True, categorical=True) for n in extra),
    )


@dataclass
class ExportReport:
    directory: Path
    counts: dict[str, int]

    def describe(self) -> str:
        parts = ", ".join(f"{n:,} {k}" for k, n in self.counts.items())
        return f"exported {parts} to {self.directory}"


def export_directory(db_path: Path | str, directory: Path | str) -> ExportReport:
    """Write the stored datasets to ``directory`` in Personalize's bulk CSV format, with
    each dataset's Avro schema beside it (``db_path``: a file or a store URL)."""
    from recsys.event_stores import open_event_store

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with open_event_store(db_path) as store:
        schema = DEFAULT_SCHEMAS["interactions"]
        counts["interactions"] = _write_csv(
            directory / CSV_FILES["interactions"],
            schema.names,
            (
                [e.user_id, e.item_id, e.timestamp, e.event_type or None, e.event_value,
                 "|".join(e.impression) or None, e.recommendation_id]
                for e in store.interactions()
            ),
        )
        write_schema(directory, schema)
        for dataset, records in (("items", list(store.items())), ("users", list(store.users()))):
            schema = _columns_for(DEFAULT_SCHEMAS[dataset], records)
            counts[dataset] = _write_csv(
                directory / CSV_FILES[dataset],
                schema.names,
                ([rec.get(name) for name in schema.names] for rec in records),
            )
            write_schema(directory, schema)
        counts["impression events"] = _write_csv(
            directory / IMPRESSIONS_FILE,
            list(IMPRESSIONS_COLUMNS),
            (
                [m.user_id, m.timestamp, "|".join(m.item_ids), m.recommendation_id]
                for m in store.impressions()
            ),
        )
    return ExportReport(directory, counts)


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
