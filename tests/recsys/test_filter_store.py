"""Named filters in a real SQLite file shared with other tables. The contract every filter
store keeps (durable, immutable, ...) runs on SQLite and PostgreSQL in
tests/stores/test_filter_store_contract.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from recsys.filters import FilterStore

NO_VOTED = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("HUNCH")'


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "hunch.db"


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
