"""schema.graphql (committed, for client developers) must match the code."""

from pathlib import Path

from gateway.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_committed_schema_matches_the_code():
    assert SCHEMA_FILE.exists(), "run: python -m gateway export-schema > schema.graphql"
    assert SCHEMA_FILE.read_text().strip() == schema.as_str().strip(), (
        "schema.graphql drifted from gateway/schema.py; regenerate it with "
        "`python -m gateway export-schema > schema.graphql` and commit it"
    )
