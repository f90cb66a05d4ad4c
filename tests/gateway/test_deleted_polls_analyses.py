"""Every command that reads a data directory to train, evaluate or analyse reads it as
training reads the store: the directory's deleted polls (deleted_polls.csv) left out,
their items.csv rows, their interactions and their ids in impression lists, and it says
how many. Before, `hunch analyze`, `hunch tune trending` and `hunch report` read the
files as they were, and `hunch evaluate` said nothing of what it left out.

Each analysis is replaced by a stand-in that keeps what it was given and stops the
command: the commands' loading is what is tested, not the analyses (tested apart)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import cli

T0 = 1_700_000_000


class _Given(Exception):
    """Raised by a stand-in analysis with what it was given."""

    def __init__(self, **given) -> None:
        super().__init__("stand-in analysis")
        self.given = given


def _stand_in(**given):
    raise _Given(**given)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Two polls, p1 deleted: a vote on each, lists naming both, an impression event
    that showed p1 alone (dropped) and one that showed both (kept without p1)."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "interactions.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,IMPRESSION\n"
        f"u1,p1,{T0},HUNCH,p1|p2\nu2,p2,{T0 + 60},HUNCH,p1|p2\nu3,p2,{T0 + 120},HUNCH,\n")
    (d / "items.csv").write_text("ITEM_ID,CATEGORY,AUTHOR_ID,CREATION_TIMESTAMP\n"
                                 f"p1,X,u2,{T0 - 60}\np2,X,u3,{T0 - 60}\n")
    (d / "users.csv").write_text("USER_ID,CLUSTER,COMMUNITY\nu1,a,a\nu2,a,a\nu3,b,b\n")
    (d / "impressions.csv").write_text("USER_ID,TIMESTAMP,IMPRESSION,RECOMMENDATION_ID\n"
                                       f"u1,{T0 + 1},p1,\nu3,{T0 + 2},p2|p1,\n")
    (d / "follows.csv").write_text("FOLLOWER_ID,FOLLOWEE_ID\nu1,u2\nu2,u3\n")
    (d / "deleted_polls.csv").write_text(
        f"ITEM_ID,AUTHOR_ID,DELETED_BY,DELETED_AT\np1,u2,u2,{T0 + 300}\n")
    return d


NOTE = ("note: left out 1 deleted polls (deleted_polls.csv) as training from the store "
        "does: 1 polls of items.csv, 1 interactions and 1 impression events that showed "
        "only deleted polls; 2 impression lists were read without them")


def _module(name: str):
    # The package exports each analysis under its module's name: the module by import.
    return importlib.import_module(f"recsys.analysis.{name}")


def _run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert isinstance(result.exception, _Given), result.output
    if "--json" in args:  # the note on stderr: stdout stays JSON
        assert NOTE in result.stderr and NOTE not in result.stdout
    return result.output, result.exception.given


def _without_p1(interactions, items, impressions) -> None:
    assert [(e.item_id, e.impression) for e in interactions] == [
        ("p2", ("p2",)), ("p2", ())]
    assert list(items) == ["p2"]
    assert [m.item_ids for m in impressions] == [("p2",)]


@pytest.mark.parametrize("as_json", [False, True])
def test_follow_impact_leaves_out_deleted_polls(data, monkeypatch, as_json) -> None:
    module = _module("follow_impact")

    monkeypatch.setattr(module, "follow_impact", lambda interactions, items, users, follows,
                        **kw: _stand_in(interactions=interactions, items=items,
                                        impressions=kw["impressions"]))
    output, given = _run("analyze", "follow-impact", "--data", str(data),
                         *(["--json"] if as_json else []))
    _without_p1(given["interactions"], given["items"], given["impressions"])
    assert NOTE in output


def test_served_follow_impact_leaves_out_served_polls_deleted_since(
        data, monkeypatch, tmp_path) -> None:
    module = _module("served")

    served = tmp_path / "served.csv"
    served.write_text("USER_ID,RECOMMENDATION_ID,ITEM_ID,POSITION,SOURCE,TIMESTAMP\n"
                      f"u1,r1,p1,0,up,{T0}\nu1,r1,p2,1,up,{T0}\n")
    monkeypatch.setattr(module, "served_follow_impact", lambda served, follows, items,
                        labels: _stand_in(served=served, items=items))
    output, given = _run("analyze", "follow-impact", "--data", str(data),
                         "--served", str(served))
    assert [p.item_id for p in given["served"]] == ["p2"]
    assert list(given["items"]) == ["p2"]
    assert NOTE in output
    assert "left out 1 served polls of served.csv whose polls were deleted" in output


@pytest.mark.parametrize("command", [["analyze", "text"], ["analyze", "exploration"]])
def test_text_and_exploration_leave_out_deleted_polls(data, monkeypatch, command) -> None:
    exploration, text = _module("exploration"), _module("text_ablation")

    def keep(interactions, items, users, **kw):
        _stand_in(interactions=interactions, items=items, impressions=kw["impressions"])

    monkeypatch.setattr(text, "text_ablation", keep)
    monkeypatch.setattr(exploration, "exploration_replay", keep)
    output, given = _run(*command, "--data", str(data), "--json")
    _without_p1(given["interactions"], given["items"], given["impressions"])
    assert NOTE in output


def test_trend_tuning_leaves_out_deleted_polls(data, monkeypatch) -> None:
    module = _module("trend_tuning")

    monkeypatch.setattr(module, "tune_trending",
                        lambda events, **kw: _stand_in(interactions=events))
    output, given = _run("tune", "trending", "--data", str(data))
    assert [e.item_id for e in given["interactions"]] == ["p2", "p2"]
    assert NOTE in output


def test_the_report_leaves_out_deleted_polls(data, monkeypatch, tmp_path) -> None:
    module = _module("follow_impact")

    monkeypatch.setattr(module, "follow_impact", lambda interactions, items, users, follows,
                        **kw: _stand_in(interactions=interactions, items=items,
                                        impressions=kw["impressions"]))
    output, given = _run("report", "--data", str(data), "--out", str(tmp_path / "report"))
    _without_p1(given["interactions"], given["items"], given["impressions"])
    assert NOTE in output


def test_evaluate_says_what_it_left_out(data, monkeypatch) -> None:
    """`hunch evaluate` trained on training_data(), which left deleted polls out, but
    said nothing of it: a run whose numbers changed read as the same data."""
    import recsys.evaluation as evaluation

    monkeypatch.setattr(evaluation, "evaluate", lambda data, **kw: _stand_in(data=data))
    output, given = _run("evaluate", "--data", str(data), "--json")
    trained = given["data"]
    _without_p1(trained.interactions, trained.items, trained.impressions)
    assert NOTE in output


def test_evaluate_json_records_what_it_left_out(data, monkeypatch) -> None:
    """The note went to stderr only: a script keeping `hunch evaluate --json` had no
    record that its numbers were measured without the deleted polls."""
    import recsys.evaluation as evaluation

    class _Report:
        def to_json(self) -> dict:
            return {"schema_version": 0, "models": []}

    monkeypatch.setattr(evaluation, "evaluate", lambda data, **kw: _Report())
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    left_out = json.loads(result.stdout)["left_out"]
    assert left_out == {"deleted_polls": 1, "items": 1, "interactions": 1,
                        "impression_events": 1, "impression_lists_read_without_them": 2}
    import jsonschema

    from recsys.evaluation.evaluate import report_json_schema

    jsonschema.validate(left_out, report_json_schema()["properties"]["left_out"])


def test_train_from_a_directory_counts_what_it_trained_on(data, tmp_path) -> None:
    """`hunch train --data` left deleted polls out but reported (and recorded in the
    manifest) the directory's counts, deleted polls' votes included."""
    result = CliRunner().invoke(cli, ["train", "--recipe", "popularity-count", "--data",
                                      str(data), "--artifacts", str(tmp_path / "artifacts"),
                                      "--no-metrics"], env={"HUNCH_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert ("2 interactions; 1 deleted polls of deleted_polls.csv left out, as training "
            "from the store leaves them out") in result.output
    manifest, = (tmp_path / "artifacts").rglob("manifest.json")
    dataset = json.loads(manifest.read_text())["dataset"]
    assert (dataset["interactions"], dataset["items"], dataset["impressions"]) == (2, 1, 1)
