"""Amazon Personalize dataset schemas (Avro records) for Interactions, Items and Users.

Personalize describes each dataset with an Avro record schema in the namespace
``com.amazonaws.personalize.schema``. String fields count only when declared
``categorical`` (values separated by ``|``) or, for Items, ``textual``. These are the
schemas of the Hunch app's datasets; a data directory may carry its own
``<dataset>.schema.json`` to override them (see :func:`load_schema`). Amazon's Items
dataset takes one textual field where the local ITEMS has five: Amazon is given
AMAZON_ITEMS, and :func:`check_amazon_quotas` checks a schema meant for Amazon.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hunchio.values import MAX_ID_LENGTH  # noqa: F401 - re-exported, see below
from recsys.errors import AmazonQuotaExceeded, SchemaError

NAMESPACE = "com.amazonaws.personalize.schema"

# Limits from Personalize's documentation; named so the reason travels with the number.
# MAX_ID_LENGTH (USER_ID, ITEM_ID, RECOMMENDATION_ID) is hunchio's: graph/ checks the ids
# of a follows.csv by it too.
MAX_CATEGORICAL_LENGTH = 1000  # a whole categorical value, all `|`-separated parts
MAX_IMPRESSION_LENGTH = 1000  # the pipe-separated IMPRESSION column
MAX_TEXTUAL_LENGTH = 20_000  # textual fields are cut (not rejected) past this
# Amazon's limit for a textual value in Chinese or Japanese (developer guide, quotas and
# "Unstructured text metadata"); Amazon truncates past it as past 20,000 in others.
AMAZON_MAX_TEXTUAL_LENGTH_CHINESE_JAPANESE = 7_000
MAX_USER_METADATA_FIELDS = 5  # the local loader's rule (Amazon's guide once said 5)
# Amazon Personalize's dataset quotas (developer guide, "Service quotas"). The local
# engine reads five textual fields of a poll; Amazon's Items dataset declares one, so
# Amazon is given AMAZON_ITEMS (see recsys/amazon_items.py).
AMAZON_MAX_TEXTUAL_FIELDS = 1  # Items
AMAZON_MAX_ITEM_METADATA_FIELDS = 100
AMAZON_MAX_USER_METADATA_FIELDS = 25
AMAZON_MAX_INTERACTION_METADATA_COLUMNS = 5  # reserved fields excluded
AMAZON_MAX_EVENT_TYPES_AND_METADATA = 10  # distinct event types + those columns

DatasetName = Literal["interactions", "items", "users"]
DATASETS: tuple[DatasetName, ...] = ("interactions", "items", "users")
CSV_FILES: dict[str, str] = {
    "interactions": "interactions.csv",
    "items": "items.csv",
    "users": "users.csv",
}
PROMOTIONAL_EVENT = "PROMOTIONAL_EVENT"  # the CATEGORY of polls that promotions push
# The CATEGORY of a deleted poll's record at Amazon Personalize (which cannot delete one
# item: PutItems replaces its record): `EXCLUDE ItemID WHERE Items.CATEGORY IN
# ("hunch-deleted")` in a campaign's filters keeps Amazon from ranking it; reserved, so
# upsertPoll refuses it as an author's category.
DELETED_POLL_CATEGORY = "hunch-deleted"


@dataclass(frozen=True)
class Field:
    """One column of a dataset, as its Avro schema declares it."""

    name: str
    type: str  # "string", "long", "int", "float", "double", "boolean"
    nullable: bool = False
    categorical: bool = False
    textual: bool = False

    @property
    def numeric(self) -> bool:
        return self.type in ("long", "int", "float", "double")

    def to_avro(self) -> dict:
        avro_type: str | list[str] = ["null", self.type] if self.nullable else self.type
        out: dict = {"name": self.name, "type": avro_type}
        if self.categorical:
            out["categorical"] = True
        if self.textual:
            out["textual"] = True
        return out


@dataclass(frozen=True)
class DatasetSchema:
    """A dataset's schema: its name, its fields in CSV column order, its id column(s)."""

    dataset: DatasetName
    fields: tuple[Field, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if not f.nullable]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_avro(self) -> dict:
        return {
            "type": "record",
            "name": self.dataset.capitalize(),
            "namespace": NAMESPACE,
            "fields": [f.to_avro() for f in self.fields],
            "version": "1.0",
        }


INTERACTIONS = DatasetSchema(
    "interactions",
    (
        Field("USER_ID", "string"),
        Field("ITEM_ID", "string"),
        Field("TIMESTAMP", "long"),
        Field("EVENT_TYPE", "string"),
        Field("EVENT_VALUE", "float", nullable=True),
        Field("IMPRESSION", "string", nullable=True),
        Field("RECOMMENDATION_ID", "string", nullable=True),
    ),
)

ITEMS = DatasetSchema(
    "items",
    (
        Field("ITEM_ID", "string"),
        Field("CATEGORY", "string", categorical=True),
        Field("AUTHOR_ID", "string", categorical=True),
        Field("CREATION_TIMESTAMP", "long"),
        Field("QUESTION", "string", nullable=True, textual=True),
        Field("OPTIONS", "string", nullable=True, textual=True),
        Field("DESCRIPTION", "string", nullable=True, textual=True),
        Field("OPTION_DESCRIPTIONS", "string", nullable=True, textual=True),
        Field("COMMENTS", "string", nullable=True, textual=True),
    ),
)

# Items of a public catalog (artists, movies) have no author in the app's sense: the
# items schema with AUTHOR_ID allowed empty, as the public-data converters write it.
UNAUTHORED_ITEMS = DatasetSchema("items", tuple(
    Field(f.name, f.type, f.nullable or f.name == "AUTHOR_ID", f.categorical, f.textual)
    for f in ITEMS.fields))

USERS = DatasetSchema(
    "users",
    (
        Field("USER_ID", "string"),
        Field("AGE", "int", nullable=True),
        Field("LOCALE", "string", nullable=True, categorical=True),
        # Written by the follower graph's `hunch graph cluster` (graph exports them).
        Field("CLUSTER", "string", nullable=True, categorical=True),
        Field("COMMUNITY", "string", nullable=True, categorical=True),
    ),
)

# The one textual field of Amazon's Items dataset: a poll's text fields joined (see
# recsys/amazon_items.py). Named for what it holds rather than reusing DESCRIPTION, which
# locally is one part of it (and an analysis or filter reading DESCRIPTION on both
# backends would read two different things).
POLL_TEXT = "POLL_TEXT"

# The Items schema Amazon is given: ITEMS with its five textual fields as one. Every
# field but ITEM_ID nullable, so that one schema takes the bulk export and live PutItems
# of any catalog (public catalogs have no author; Amazon takes empty metadata).
AMAZON_ITEMS = DatasetSchema(
    "items",
    (
        Field("ITEM_ID", "string"),
        Field("CATEGORY", "string", nullable=True, categorical=True),
        Field("AUTHOR_ID", "string", nullable=True, categorical=True),
        Field("CREATION_TIMESTAMP", "long", nullable=True),
        Field(POLL_TEXT, "string", nullable=True, textual=True),
    ),
)

DEFAULT_SCHEMAS: dict[str, DatasetSchema] = {
    "interactions": INTERACTIONS,
    "items": ITEMS,
    "users": USERS,
}

_ID_FIELDS = {"interactions": ("USER_ID", "ITEM_ID"), "items": ("ITEM_ID",), "users": ("USER_ID",)}
_AVRO_TYPES = {"string", "long", "int", "float", "double", "boolean"}
# Reserved fields the engine reads as one type (Personalize's rules): a TIMESTAMP
# declared "string" was read as text and failed deep in import and training.
_FIELD_TYPES: dict[tuple[str, str], frozenset[str]] = {
    ("interactions", "USER_ID"): frozenset({"string"}),
    ("interactions", "ITEM_ID"): frozenset({"string"}),
    ("interactions", "TIMESTAMP"): frozenset({"long"}),
    ("interactions", "EVENT_TYPE"): frozenset({"string"}),
    ("interactions", "EVENT_VALUE"): frozenset({"float", "double", "int", "long"}),
    ("interactions", "IMPRESSION"): frozenset({"string"}),
    ("interactions", "RECOMMENDATION_ID"): frozenset({"string"}),
    ("items", "ITEM_ID"): frozenset({"string"}),
    ("items", "CREATION_TIMESTAMP"): frozenset({"long"}),
    ("users", "USER_ID"): frozenset({"string"}),
}


def schema_from_avro(dataset: DatasetName, avro: dict, source: str = "schema") -> DatasetSchema:
    """Build a :class:`DatasetSchema` from an Avro record, checking Personalize's rules."""
    if not isinstance(avro, dict) or avro.get("type") != "record" \
            or not isinstance(avro.get("fields"), list):
        raise SchemaError(f"{source}: expected an Avro record with a 'fields' list")
    fields: list[Field] = []
    for i, raw in enumerate(avro["fields"]):
        name = raw.get("name") if isinstance(raw, dict) else None
        if not name:
            raise SchemaError(f"{source}: field #{i + 1} has no name")
        avro_type = raw.get("type")
        nullable = False
        if isinstance(avro_type, list):
            non_null = [t for t in avro_type if t != "null"]
            nullable = "null" in avro_type
            avro_type = non_null[0] if len(non_null) == 1 else None
        if avro_type not in _AVRO_TYPES:
            raise SchemaError(f"{source}: field {name} has unsupported type {raw.get('type')!r}")
        textual = bool(raw.get("textual"))
        if textual and dataset != "items":
            raise SchemaError(f"{source}: field {name}: only Items may have textual fields")
        fields.append(
            Field(name, avro_type, nullable, bool(raw.get("categorical")), textual)
        )
    names = [f.name for f in fields]
    for field in fields:
        expected = _FIELD_TYPES.get((dataset, field.name))
        if expected is not None and field.type not in expected:
            raise SchemaError(f"{source}: field {field.name} must be of type "
                              f"{' or '.join(sorted(expected))}, not {field.type!r}")
    for required in _ID_FIELDS[dataset] + (("TIMESTAMP",) if dataset == "interactions" else ()):
        if required not in names:
            raise SchemaError(f"{source}: the {dataset} schema must declare {required}")
    if dataset == "users" and not 1 <= len(fields) - 1 <= MAX_USER_METADATA_FIELDS:
        raise SchemaError(
            f"{source}: Users needs 1 to {MAX_USER_METADATA_FIELDS} metadata fields, "
            f"got {len(fields) - 1}"
        )
    return DatasetSchema(dataset, tuple(fields))


_INTERACTION_RESERVED = frozenset(f.name for f in INTERACTIONS.fields)
_AMAZON_METADATA_LIMITS = {"items": AMAZON_MAX_ITEM_METADATA_FIELDS,
                           "users": AMAZON_MAX_USER_METADATA_FIELDS,
                           "interactions": AMAZON_MAX_INTERACTION_METADATA_COLUMNS}


def amazon_quota_problems(schema: DatasetSchema, event_types: int | None = None,
                          ) -> list[str]:
    """Why Amazon Personalize would refuse a dataset made from ``schema`` (its dataset
    quotas); empty when it takes it. ``event_types``: the number of distinct event
    types the interactions hold, counted with their metadata columns."""
    if schema.dataset == "interactions":
        metadata = [name for name in schema.names if name not in _INTERACTION_RESERVED]
    else:
        metadata = [name for name in schema.names if name not in _ID_FIELDS[schema.dataset]]
    limit = _AMAZON_METADATA_LIMITS[schema.dataset]
    problems = []
    textual = [f.name for f in schema.fields if f.textual]
    if len(textual) > AMAZON_MAX_TEXTUAL_FIELDS:
        problems.append(
            f"{len(textual)} textual fields ({', '.join(textual)}); Amazon's Items dataset "
            f"takes {AMAZON_MAX_TEXTUAL_FIELDS} (join them in one, as {POLL_TEXT} does)")
    if schema.dataset == "interactions" and event_types is not None \
            and event_types + len(metadata) > AMAZON_MAX_EVENT_TYPES_AND_METADATA:
        problems.append(f"{event_types} event types and {len(metadata)} metadata fields; "
                        f"Amazon takes {AMAZON_MAX_EVENT_TYPES_AND_METADATA} together")
    if len(metadata) > limit:
        problems.append(f"{len(metadata)} metadata fields; Amazon's "
                        f"{schema.dataset.capitalize()} dataset takes {limit}")
    return problems


def check_amazon_quotas(schema: DatasetSchema, event_types: int | None = None) -> None:
    """Raise :class:`AmazonQuotaExceeded` unless Amazon takes a dataset of ``schema``."""
    problems = amazon_quota_problems(schema, event_types)
    if problems:
        raise AmazonQuotaExceeded(f"the {schema.dataset} schema is not one Amazon "
                                  f"Personalize takes: {'; '.join(problems)}")


def schema_path(directory: Path, dataset: DatasetName) -> Path:
    return Path(directory) / f"{dataset}.schema.json"


def load_schema(directory: Path, dataset: DatasetName) -> DatasetSchema:
    """The schema in ``directory/<dataset>.schema.json`` if present, else the default."""
    path = schema_path(directory, dataset)
    if not path.exists():
        return DEFAULT_SCHEMAS[dataset]
    try:
        avro = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8") from exc
    except IsADirectoryError as exc:
        raise SchemaError(f"{path}: a directory, not a schema file") from exc
    return schema_from_avro(dataset, avro, str(path))


def write_schema(directory: Path, schema: DatasetSchema) -> Path:
    path = schema_path(directory, schema.dataset)
    path.write_text(json.dumps(schema.to_avro(), indent=2) + "\n")
    return path


def write_dataset(directory: Path, schema: DatasetSchema, header: Sequence[str],
                  rows: Iterable[Sequence[object]]) -> Path:
    """Write ``directory/<dataset>.csv`` and its schema, as the public-data converters
    do: the CSV goes to a partial file swapped in whole, so a failed write keeps the file
    there was. An OSError is the caller's to name in its own typed error."""
    path = directory / CSV_FILES[schema.dataset]
    partial = path.with_name(f".{path.name}.partial")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(partial, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        write_schema(directory, schema)
        os.replace(partial, path)
    finally:
        if partial.is_file():
            partial.unlink()
    return path


def write_interactions(directory: Path, header: Sequence[str],
                       rows: Iterable[Sequence[object]]) -> Path:
    """:func:`write_dataset` of interactions with the default schema."""
    return write_dataset(directory, INTERACTIONS, header, rows)
