"""The command line follows HUNCH_STORE_URL: ``hunch data import``/``export`` and
``hunch db upgrade`` work on SQLite (a plain path or sqlite:///) and PostgreSQL alike."""

from __future__ import annotations

import csv
import time

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from recsys.event_stores import open_event_store
from recsys.events import SCHEMA_VERSION
from recsys.filters import open_filter_store
from recsys.promotions import open_promotion_store
from recsys.schemas import INTERACTIONS, ITEMS


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'elsewhere' / 'events.sqlite3'}"
    return request.getfixturevalue("postgres_url")


def _csv(path, header, rows) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def test_data_import_export_and_db_upgrade_use_the_store_url(tmp_path, store_url) -> None:
    now = int(time.time())
    data = tmp_path / "data"
    data.mkdir()
    _csv(data / "interactions.csv", INTERACTIONS.names,
         [["u1", "p1", str(now - 60), "HUNCH", "", "p1|p2", ""],
          ["u2", "p2", str(now - 30), "COMMENT", "", "", ""]])
    _csv(data / "items.csv", ITEMS.names,
         [["p1", "SPORTS", "a1", str(now - 600), "Who?", "", "", "", ""],
          ["p2", "MUSIC", "a2", str(now - 600), "", "", "", "", ""]])
    env = {"HUNCH_HOME": str(tmp_path / "home"), "HUNCH_STORE_URL": store_url}
    runner = CliRunner()

    upgraded = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    assert "events: " in upgraded.output and "password" not in upgraded.output
    # The gateway opens the filters and promotions without upgrading: they are up to date.
    open_filter_store(store_url).close()
    open_promotion_store(store_url).close()
    imported = runner.invoke(cli, ["data", "import", str(data)], env=env)
    assert imported.exit_code == 0, imported.output
    assert "2 interactions and 0 impression events were new, 0 already stored or counted" \
        in imported.output, imported.output
    again = runner.invoke(cli, ["data", "import", str(data)], env=env)  # de-duplicated
    assert again.exit_code == 0, again.output
    # the summary says what the store took, not only what the files held
    assert "0 interactions and 0 impression events were new, 2 already stored or counted" \
        in again.output, again.output
    with open_event_store(store_url) as store:
        assert [(e.user_id, e.item_id) for e in store.interactions()] == [("u1", "p1"),
                                                                        ("u2", "p2")]
        assert store.get_item("p1")["QUESTION"] == "Who?"
    assert not (tmp_path / "home" / "events.sqlite3").exists()  # the URL, not the default
    exported = runner.invoke(cli, ["data", "export", str(tmp_path / "out")], env=env)
    assert exported.exit_code == 0, exported.output
    with (tmp_path / "out" / "interactions.csv").open() as fh:
        assert [row[:2] for row in csv.reader(fh)][1:] == [["u1", "p1"], ["u2", "p2"]]
    if store_url.startswith("sqlite"):
        assert f"events: {SCHEMA_VERSION}" in upgraded.output


def test_a_restore_from_an_export_keeps_every_deleted_id_reserved(tmp_path, store_url) -> None:
    """`hunch data export` wrote no tombstones: restored into a new store (a move from
    SQLite to PostgreSQL, a backup), every deleted id was free again, and another user's
    upsertPoll took it over (a moderator's takedown undone for the id)."""
    from recsys.admission import DeletedPolls
    from recsys.events import Impression, Interaction
    from recsys.training import read_event_store

    now = int(time.time())
    source = f"sqlite://{tmp_path / 'source' / 'events.sqlite3'}"
    with open_event_store(source) as store:
        store.upsert_items([{"ITEM_ID": p, "CATEGORY": "X", "AUTHOR_ID": "ann",
                             "CREATION_TIMESTAMP": now - 600, "QUESTION": f"{p}?"}
                            for p in ("p1", "p2", "p3")])
        store.import_bulk([Interaction("u1", "p1", "HUNCH", now - 60, impression=("p1", "p2")),
                           Interaction("u2", "p2", "HUNCH", now - 50)],
                          [Impression("u3", ("p1", "p3"), now - 40)])
        store.delete_item("p1", acting_user="moderator", admin=True, now=now - 30)
        store.delete_item("p3", acting_user="ann", now=now - 20)
    runner = CliRunner()
    home = str(tmp_path / "home")
    exported = runner.invoke(cli, ["data", "export", str(tmp_path / "backup")],
                             env={"HUNCH_HOME": home, "HUNCH_STORE_URL": source})
    assert exported.exit_code == 0, exported.output
    assert "2 deleted polls" in exported.output and "deleted_polls.csv" in exported.output
    assert not (tmp_path / "backup" / "deleted_polls.schema.json").exists()  # not Amazon's

    env = {"HUNCH_HOME": home, "HUNCH_STORE_URL": store_url}
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    for mode in ("full", "incremental"):  # a second restore finds them stored
        imported = runner.invoke(cli, ["data", "import", "--mode", mode,
                                       str(tmp_path / "backup")], env=env)
        assert imported.exit_code == 0, imported.output
        new = 2 if mode == "full" else 0
        assert (f"2 deleted polls' tombstones read from deleted_polls.csv ({new} new to the "
                f"store, {2 - new} deleted here already)") in imported.output, imported.output
    with open_event_store(store_url) as store:
        for user in ("eve", "ann"):  # another user, or the author, claiming the id
            with pytest.raises(DeletedPolls, match="stays deleted"):
                store.upsert_item({"ITEM_ID": "p1", "CATEGORY": "X", "QUESTION": "mine now"},
                                  acting_user=user)
        assert [(d.item_id, d.author_id, d.deleted_by, d.deleted_at)
                for d in store.deletions()] == [("p1", "ann", "moderator", now - 30),
                                                ("p3", "ann", "ann", now - 20)]
        assert set(store.deletions_since(0)[1]) == {"p1", "p3"}  # what serving drops
        trained = read_event_store(store).data
    assert [e.item_id for e in trained.interactions] == ["p2"]
    assert list(trained.items) == ["p2"] and trained.impressions == []


def test_an_import_skips_the_events_of_deleted_polls_and_says_how_many(
        tmp_path, store_url) -> None:
    """`hunch data import` stored the votes and impression lists of polls deleted in the
    store, or by the directory's own deleted_polls.csv, which a live append refuses:
    trained on again and exported again. Skipped now, and the summary says so."""
    from recsys.events import Interaction

    now = int(time.time())
    env = {"HUNCH_HOME": str(tmp_path / "home"), "HUNCH_STORE_URL": store_url}
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    with open_event_store(store_url) as store:
        store.upsert_items([{"ITEM_ID": p, "CATEGORY": "X", "AUTHOR_ID": "ann"}
                            for p in ("p1", "p2")])
        store.import_bulk([Interaction("u0", "p1", "HUNCH", now - 90)])
        store.delete_item("p1", acting_user="ann", now=now - 80)
    data = tmp_path / "data"
    data.mkdir()
    _csv(data / "interactions.csv", INTERACTIONS.names,
         [["u1", "p1", str(now - 60), "HUNCH", "", "", ""],
          ["u2", "p3", str(now - 50), "HUNCH", "", "", ""],
          ["u3", "p2", str(now - 40), "HUNCH", "", "p1|p2|p3", ""]])
    _csv(data / "impressions.csv", ["USER_ID", "TIMESTAMP", "IMPRESSION", "RECOMMENDATION_ID"],
         [["u4", str(now - 30), "p3|p1", ""], ["u5", str(now - 20), "p1|p2", ""]])
    _csv(data / "deleted_polls.csv", ["ITEM_ID", "AUTHOR_ID", "DELETED_BY", "DELETED_AT"],
         [["p3", "", "tools", str(now - 10)]])
    _csv(data / "items.csv", ["ITEM_ID", "CATEGORY", "AUTHOR_ID", "CREATION_TIMESTAMP"],
         [["p2", "X", "ann", str(now - 600)]])
    for mode, new in (("full", 1), ("incremental", 0)):
        imported = runner.invoke(cli, ["data", "import", "--mode", mode, str(data)], env=env)
        assert imported.exit_code == 0, imported.output
        assert (f"{new} interactions and {new} impression events were new, {2 - 2 * new} "
                "already stored") in imported.output, imported.output
        assert ("2 interactions on deleted polls and 1 impression events that showed only "
                "deleted polls were skipped, and 2 events were stored without the deleted "
                "polls of their impression list") in imported.output, imported.output
        assert "name polls that neither" not in imported.output  # skipped, not unknown
    with open_event_store(store_url) as store:
        assert [(e.item_id, e.impression) for e in store.interactions()] == [("p2", ("p2",))]
        assert [m.item_ids for m in store.impressions()] == [("p2",)]
