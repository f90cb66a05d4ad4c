"""What deletion means beyond the API: training reads the store as if a deleted poll had
never been, an import does not bring it back, and a worker's catalog keeps it out of
every filter mask. Real SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def _tombstones(directory: Path, *rows: str,
                header: str = "ITEM_ID,AUTHOR_ID,DELETED_BY,DELETED_AT") -> None:
    directory.mkdir(exist_ok=True)
    (directory / "deleted_polls.csv").write_text("\n".join((header, *rows)) + "\n")


def test_a_bad_tombstone_file_is_refused_line_by_line_and_nothing_is_imported(
        tmp_path: Path) -> None:
    """deleted_polls.csv is validated as every file of the directory, before anything is
    written: a valid tombstone of a bad file does not slip in either."""
    from recsys.datasets import load_directory
    from recsys.errors import DatasetValidationError

    path = tmp_path / "events.sqlite3"
    _store_with_votes(path).close()
    data = tmp_path / "data"
    _tombstones(data, f"p1,ann,ann,{T0}", f"p2|p3,ann,ann,{T0}", f"p2,ann,,{T0}",
                "p3,ann,ann,yesterday", f"p3,ann,ann,{10**13}", f"p1,ann,moderator,{T0}",
                f"p3,{'a' * 257},ann,{T0}", f"p3, ann,ann,{T0}")
    with pytest.raises(DatasetValidationError) as info:
        load_directory(data, require_interactions=False)
    assert info.value.problems == [
        "deleted_polls.csv:3: ITEM_ID 'p2|p3' contains '|', which separates the item ids "
        "of an IMPRESSION list; choose ids without it",
        "deleted_polls.csv:4: DELETED_BY is empty but required",
        "deleted_polls.csv:5: DELETED_AT 'yesterday' is not an integer (digits 0-9)",
        "deleted_polls.csv:6: DELETED_AT 10000000000000 is not a date (years 1 to 9999); "
        "write the deletion's time in epoch seconds",
        "deleted_polls.csv:7: ITEM_ID 'p1' already appeared on line 2; keep one tombstone "
        "per poll",
        "deleted_polls.csv:8: AUTHOR_ID of deleted poll 'p3' "
        f"{'a' * 40!r}... (257 characters) is too long; Personalize allows at most 256 "
        "characters",
        info.value.problems[-1]]
    assert info.value.problems[-1].startswith("deleted_polls.csv:9: AUTHOR_ID ' ann'")
    _tombstones(data, header="ITEM_ID,DELETED_BY,WHEN")
    with pytest.raises(DatasetValidationError, match="deleted_polls.csv:1: unknown column"):
        import_directory(data, path)
    _tombstones(data, f"p1,ann,ann,{T0}", "p2,ann,ann,never")
    (data / "interactions.csv").write_text(
        f"USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu9,p2,{T0},HUNCH\n")
    with pytest.raises(DatasetValidationError, match="deleted_polls.csv:3"):
        import_directory(data, path, mode="full")
    with EventStore(path) as store:
        assert store.get_item("p1") is not None and list(store.deletions()) == []


def test_tombstones_alone_or_beside_the_polls_rows_keep_them_deleted(tmp_path: Path) -> None:
    """An incremental import of deleted_polls.csv alone (a moderator's takedowns carried to
    another store), and a directory whose items.csv still holds a tombstoned poll: the
    tombstone is stored first, so the row is skipped as a stored tombstone's is."""
    path = tmp_path / "events.sqlite3"
    _store_with_votes(path).close()
    data = tmp_path / "data"
    _tombstones(data, f"p1,ann,moderator,{T0 + 9}", f"orphan,,tools,{T0 + 9}")
    report = import_directory(data, path)
    assert "2 deleted polls" in report.describe()
    assert (report.written.deletions, report.kept_deleted) == (2, 0)
    (data / "items.csv").write_text(
        "ITEM_ID,CATEGORY,AUTHOR_ID,CREATION_TIMESTAMP,QUESTION\n"
        f"p2,X,ann,{T0},again\np4,X,bob,{T0},new\n")
    (data / "interactions.csv").write_text(
        f"USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu9,p4,{T0},HUNCH\n")
    _tombstones(data, f"p2,ann,ann,{T0 + 10}", f"p1,ann,moderator,{T0 + 9}")
    report = import_directory(data, path, mode="full")
    assert (report.written.deletions, report.written.items, report.kept_deleted) == (1, 1, 1)
    assert "1 polls of items.csv were deleted" in report.describe()
    with EventStore(path) as store:
        assert [r["ITEM_ID"] for r in store.items()] == ["p4"]
        assert store.deleted_item_ids(["p1", "p2", "p3", "orphan"]) == ["p1", "p2", "orphan"]
        assert store.get_item("p3") is None  # the full import's catalog was items.csv's


def test_training_from_a_directory_reads_its_tombstones_as_training_reads_the_store(
        tmp_path: Path) -> None:
    """`hunch train --data DIR` of a directory with deleted_polls.csv trains what an import
    of it would: nothing of the deleted polls."""
    from recsys.datasets import load_directory

    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,IMPRESSION\n"
        f"u1,p1,{T0},HUNCH,p1|p2\nu2,p2,{T0 + 1},HUNCH,p1|p2\n")
    (data / "items.csv").write_text("ITEM_ID,CATEGORY,AUTHOR_ID,CREATION_TIMESTAMP\n"
                                    f"p1,X,ann,{T0}\np2,X,ann,{T0}\n")
    _tombstones(data, f"p1,ann,ann,{T0 + 5}")
    datasets = load_directory(data)
    assert "1 deleted polls" in datasets.describe()
    trained = datasets.training_data()
    assert [(e.item_id, e.impression) for e in trained.interactions] == [("p2", ("p2",))]
    assert list(trained.items) == ["p2"]


def test_a_tombstone_dated_before_the_history_floor_or_in_the_future_is_refused_by_line(
        tmp_path: Path) -> None:
    """DELETED_AT was checked as a date only: 0 (a missing time) or a time ahead of the
    server's clock was stored, though no store can have deleted a poll then (and one past
    2038 broke deletePoll's answer, a GraphQL Int). With the import's rules it follows
    their history rule, as an imported event's TIMESTAMP does: every such line named,
    nothing written."""
    from recsys.admission import EventRules
    from recsys.datasets import load_directory
    from recsys.errors import DatasetValidationError

    now = T0 + 86_400
    rules = EventRules(clock=lambda: now)
    path = tmp_path / "events.sqlite3"
    _store_with_votes(path).close()
    data = tmp_path / "data"
    _tombstones(data, f"p1,ann,ann,{now - 60}", "p2,ann,ann,0",
                f"p3,ann,ann,{now + 3600}", f"p4,,tools,{2**31}")
    with pytest.raises(DatasetValidationError) as info:
        import_directory(data, path, rules=rules)
    assert info.value.problems == [
        "deleted_polls.csv:3: DELETED_AT 0 is before 788918400 (the history floor); write "
        "when the poll was deleted in epoch seconds (a missing time read as 0 lands here)",
        f"deleted_polls.csv:4: DELETED_AT {now + 3600} is more than 300 s after the "
        f"server's clock ({now}): a poll cannot have been deleted later than now; check "
        "the clock of the store it came from (epoch seconds)",
        info.value.problems[2]]
    assert info.value.problems[2].startswith(f"deleted_polls.csv:5: DELETED_AT {2**31} ")
    with EventStore(path) as store:
        assert list(store.deletions()) == [] and store.get_item("p1") is not None
    # Without rules (a tool reading a directory) only a date is asked, as for events.
    assert len(load_directory(data, require_interactions=False).deletions) == 4
    _tombstones(data, f"p1,ann,ann,{now - 60}", f"p2,ann,ann,{now + 300}")  # the skew
    assert import_directory(data, path, rules=rules).written.deletions == 2
