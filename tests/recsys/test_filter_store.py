"""Named filters in a real SQLite file: durable, immutable, shared with other tables."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from recsys.filters import (
    Catalog,
    FilterAlreadyExists,
    FilterContext,
    FilterStore,
    InvalidFilterExpression,
    InvalidFilterName,
    UnknownFilter,
)
from recsys.schemas import ITEMS

NO_VOTED = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("HUNCH")'
BY_CATEGORY = "INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY)"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "hunch.db"


def test_create_get_list_delete(db):
    with FilterStore(db) as store:
        created = store.create("no-voted", NO_VOTED)
        store.create("by_category", BY_CATEGORY)
        assert store.get("no-voted").expression == NO_VOTED
        assert [f.name for f in store.list()] == ["by_category", "no-voted"]
        store.delete("no-voted")
        assert [f.name for f in store.list()] == ["by_category"]
        with pytest.raises(UnknownFilter, match="no-voted"):
            store.get("no-voted")
        with pytest.raises(UnknownFilter):
            store.delete("no-voted")
    assert created.created_at > 0


def test_stored_filter_is_ready_to_apply(db):
    catalog = Catalog({"p1": {"CATEGORY": "sport"}, "p2": {"CATEGORY": "music"}})
    with FilterStore(db) as store:
        store.create("by-category", BY_CATEGORY)
        compiled = store.get("by-category").compiled
    ctx = FilterContext(catalog)
    assert compiled.apply(["p1", "p2"], ctx, {"CATEGORY": '"music"'}) == ["p2"]


def test_filters_are_immutable(db):
    with FilterStore(db) as store:
        store.create("f", NO_VOTED)
        again = store.create("f", NO_VOTED)  # re-running a deploy script is fine
        assert again.expression == NO_VOTED
        with pytest.raises(FilterAlreadyExists, match="cannot be edited"):
            store.create("f", BY_CATEGORY)
        assert store.get("f").expression == NO_VOTED
        store.delete("f")
        store.create("f", BY_CATEGORY)  # delete, then re-create, changes it
        assert store.get("f").expression == BY_CATEGORY


def test_invalid_expression_or_name_stores_nothing(db):
    with FilterStore(db, items_schema=ITEMS) as store:
        with pytest.raises(InvalidFilterExpression, match="at position"):
            store.create("bad", 'INCLUDE ItemID WHERE Items.CATEGORY INN ("x")')
        with pytest.raises(InvalidFilterExpression, match="textual"):
            store.create("bad", 'INCLUDE ItemID WHERE Items.QUESTION IN ("x")')
        for name in ("", "-dash-first", "has space", "x" * 64):
            with pytest.raises(InvalidFilterName):
                store.create(name, NO_VOTED)
        assert store.list() == []


def test_survives_reopen_and_a_killed_process(db):
    # A child process creates a filter and dies without closing anything (like kill -9).
    child = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from recsys.filters import FilterStore
        store = FilterStore({str(db)!r})
        store.create("from-child", {NO_VOTED!r})
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    with FilterStore(db) as store:
        assert store.get("from-child").expression == NO_VOTED
        store.create("second", BY_CATEGORY)
    with FilterStore(db) as store:
        assert [f.name for f in store.list()] == ["from-child", "second"]


def test_shares_the_database_file_with_other_tables(db):
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE interactions (user_id TEXT, item_id TEXT)")
    other.execute("INSERT INTO interactions VALUES ('u1', 'p1')")
    other.commit()
    with FilterStore(db) as store:
        store.create("f", NO_VOTED)
    assert other.execute("SELECT count(*) FROM interactions").fetchone() == (1,)
    assert other.execute("SELECT name FROM filters").fetchall() == [("f",)]
    assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    other.close()
