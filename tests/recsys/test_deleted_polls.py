"""What deletion means beyond the API: training reads the store as if a deleted poll had
never been, an import does not bring it back, and a worker's catalog keeps it out of
every filter mask. Real SQLite files."""

from __future__ import annotations

from pathlib import Path

from recsys.datasets import import_directory
from recsys.events import EventStore, Impression, Interaction
from recsys.filters import Catalog
from recsys.schemas import ITEMS
from recsys.training import read_event_store

T0 = 1_700_000_000


def _store_with_votes(path: Path) -> EventStore:
    store = EventStore(path)
    store.upsert_items([{"ITEM_ID": p, "CATEGORY": "X", "AUTHOR_ID": "ann",
                         "QUESTION": f"{p}?"} for p in ("p1", "p2", "p3")])
    store.import_bulk([Interaction("u1", "p1", "HUNCH", T0, impression=("p1", "p2")),
                       Interaction("u2", "p2", "HUNCH", T0 + 1, impression=("p1", "p2")),
                       Interaction("u2", "p3", "HUNCH", T0 + 2)],
                      [Impression("u3", ("p1",), T0 + 3), Impression("u3", ("p1", "p3"), T0 + 4)])
    return store


def test_training_neither_learns_nor_recommends_a_deleted_poll(tmp_path: Path) -> None:
    with _store_with_votes(tmp_path / "events.sqlite3") as store:
        before = read_event_store(store)
        store.delete_item("p1", acting_user="ann")
        after = read_event_store(store)
        assert store.count_events(item_id="p1") == 1  # kept: history
    data = after.data
    assert [e.item_id for e in data.interactions] == ["p2", "p3"]
    assert [e.impression for e in data.interactions] == [("p2",), ()]
    assert [e.item_ids for e in data.impressions] == [("p3",)]
    assert "p1" not in data.items
    assert after.fingerprint != before.fingerprint  # scheduled training runs again


def test_an_import_of_a_deleted_poll_does_not_bring_it_back(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with _store_with_votes(path) as store:
        store.delete_item("p1", acting_user="ann")
    data = tmp_path / "data"
    data.mkdir()
    (data / "items.csv").write_text(
        "ITEM_ID,CATEGORY,AUTHOR_ID,CREATION_TIMESTAMP,QUESTION\n"
        f"p1,X,ann,{T0},back from an old export\np4,X,bob,{T0},new\n")
    report = import_directory(data, path)
    assert report.kept_deleted == 1 and "1 polls of items.csv were deleted" in report.describe()
    with EventStore(path) as store:
        assert store.get_item("p1") is None and store.get_item("p4")["QUESTION"] == "new"


def test_the_catalog_keeps_deleted_polls_out_of_every_mask() -> None:
    catalog = Catalog({"p1": {"CATEGORY": "news", "AUTHOR_ID": "ann"},
                       "p2": {"CATEGORY": "news", "AUTHOR_ID": "ann"}}, schema=ITEMS)
    assert catalog.live_mask() is None
    catalog.delete(["p1", "event-only"])  # a poll known from its events alone gets a row
    live = catalog.live_mask()
    assert [bool(live[catalog.index[p]]) for p in ("p1", "p2", "event-only")] == [
        False, True, False]
    assert not catalog.value_mask("CATEGORY", ["news"])[catalog.index["p1"]]
    assert catalog.rows_with_value("AUTHOR_ID", "ann").tolist() == [catalog.index["p2"]]
    catalog.upsert({"p1": {"CATEGORY": "news", "AUTHOR_ID": "ann"}})  # a late page
    assert not catalog.live_mask()[catalog.index["p1"]]


def test_an_export_reads_the_store_as_training_does_so_a_restore_does_not_revive_it(
        tmp_path: Path) -> None:
    """`hunch data export` wrote the deleted poll's events (and no tombstone): imported
    into another store (a move, a restore; or Amazon, which takes interactions.csv as
    it is), the poll was back, trained on and served by its id."""
    from recsys.datasets import export_directory

    with _store_with_votes(tmp_path / "events.sqlite3") as store:
        store.delete_item("p1", acting_user="ann")
    report = export_directory(tmp_path / "events.sqlite3", tmp_path / "export")
    assert report.counts["interactions"] == 2
    assert "p1" not in (tmp_path / "export" / "interactions.csv").read_text()
    assert "p1" not in (tmp_path / "export" / "impressions.csv").read_text()
    assert "left out the events of 1 deleted poll" in report.describe()
    import_directory(tmp_path / "export", tmp_path / "restored.sqlite3", mode="full")
    with EventStore(tmp_path / "restored.sqlite3") as store:
        assert store.count_events(item_id="p1") == 0
        assert "p1" not in read_event_store(store).data.items
