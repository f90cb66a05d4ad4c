"""The example query `hunch demo` prints is the first one a new user runs: it must be
valid against the schema and name no deprecated field (it asked for the connection's
recommendationId, deprecated since a page may hold polls of two recommendations)."""

from __future__ import annotations

from pathlib import Path

from graphql import build_schema, parse, validate
from graphql.validation import NoDeprecatedCustomRule, specified_rules

from gateway.cli.demo import EXAMPLE_QUERY

SCHEMA = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_the_demos_example_query_is_valid_and_names_nothing_deprecated():
    schema = build_schema(SCHEMA.read_text(encoding="utf-8"))
    errors = validate(schema, parse(EXAMPLE_QUERY), [*specified_rules, NoDeprecatedCustomRule])
    assert errors == []
