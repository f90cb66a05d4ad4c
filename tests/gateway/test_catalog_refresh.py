"""An edit to an existing poll in one worker reaches the others (issue 13: the catalog
refresh compared counts, so only new polls travelled). Two Services, as two uvicorn
workers would have, on one real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3

from gateway.services import Services
from recsys.events import _SCHEMA, EventStore
from tests.gateway.test_app import settings  # noqa: F401 - the fixture


def _has_category(services: Services, poll: str, category: str) -> bool:
    catalog = services.catalog
    return bool(catalog.value_mask("CATEGORY", [category])[catalog.index[poll]])


def test_an_edit_in_one_worker_reaches_another_after_its_refresh(settings):  # noqa: F811
    a, b = Services(settings), Services(settings)
    try:
        for services in (a, b):  # refresh by hand: no background tick between the asserts
            services._stopping.set()
            services._catalog_thread.join()
        given: list[dict] = []
        add_items = b.recipes.add_items
        b.recipes.add_items = lambda items: (given.append(items), add_items(items))[1]
        a.upsert_poll({"ITEM_ID": "p1", "CATEGORY": "politics", "QUESTION": "edited?"},
                      acting_user="a1")
        assert _has_category(a, "p1", "politics")
        assert not _has_category(b, "p1", "politics")  # b has not looked yet
        b.refresh_catalog()
        assert _has_category(b, "p1", "politics") and not _has_category(b, "p1", "sports")
        assert [items["p1"]["QUESTION"] for items in given] == ["edited?"]  # its recipes too
        # A new poll still travels, and nothing is read again when nothing changed.
        a.upsert_poll({"ITEM_ID": "brand-new", "CATEGORY": "science"}, acting_user="a2")
        b.refresh_catalog()
        b.refresh_catalog()
        assert [sorted(items) for items in given] == [["p1"], ["brand-new"]]
        assert b.polls_by_author("a2", 5) == ["brand-new"]
    finally:
        for services in (a, b):
            asyncio.run(services.close())


def test_a_version_1_store_is_migrated_and_its_polls_follow_edits(tmp_path):
    path = tmp_path / "events.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA)  # the version-1 layout, no catalog sequence
    conn.execute("INSERT INTO items VALUES ('old', '{\"AUTHOR_ID\": \"ann\"}')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with EventStore(path) as store:
        seen = store.catalog_seq()
        assert store.get_item("old") == {"ITEM_ID": "old", "AUTHOR_ID": "ann"}
        store.upsert_item({"ITEM_ID": "old", "CATEGORY": "X"}, acting_user="ann")
        seq, records = store.items_updated_since(seen)
        assert seq > seen and list(records) == ["old"] and records["old"]["CATEGORY"] == "X"
        assert store.items_updated_since(seq) == (seq, {})
    # a full import deletes the polls but never reuses a number a worker has seen
    with EventStore(path) as store:
        store.import_bulk(items=[{"ITEM_ID": "again"}], mode="full")
        later, records = store.items_updated_since(seq)
        assert list(records) == ["again"] and later > seq
