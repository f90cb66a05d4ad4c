"""An interrupted `hunch evaluate --checkpoint DIR` resumes after its last finished fold."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence

import pytest

from recsys.evaluation import evaluate
from recsys.evaluation.checkpoint import FOLD_FILE, CheckpointMismatch, directory_digest
from recsys.evaluation.evaluate import FoldsKept
from tests.recsys._evaluation_data import synthetic_polls, write_ratings_directory

MODELS = "ease,most-popular"  # ease is tuned: its searched grid must survive a resume too
# The package re-exports the function `evaluate` under its module's name.
evaluate_module = importlib.import_module("recsys.evaluation.evaluate")


class _Interrupted(Exception):
    pass


class _StopAtFold:
    """Progress that interrupts the run when ``fold`` starts (as a kill would)."""

    def __init__(self, fold: int) -> None:
        self.fold = fold

    def fold_started(self, fold: int, folds: int, models: Sequence[str]) -> None:
        if fold == self.fold:
            raise _Interrupted

    def model_finished(self, fold: int, model: str) -> None:
        pass


@pytest.fixture(scope="module")
def data():
    return synthetic_polls(users=150, polls=60, seed=5)


def _run(data, **kwargs):
    return evaluate(data, folds=3, seed=0, models=MODELS, bootstrap_samples=100, **kwargs)


def _measured(shape: dict) -> dict:
    """What a run measured, without its timings."""
    return {m["key"]: (m["status"], m["metrics"], m["hyperparameters"]) for m in shape["models"]}


def test_an_interrupted_run_resumes_and_reports_what_an_uninterrupted_one_does(
        data, tmp_path, monkeypatch) -> None:
    whole = _run(data).to_json()
    checkpoint = tmp_path / "checkpoint"
    with pytest.raises(_Interrupted):
        _run(data, checkpoint=checkpoint, data_identity="synthetic-5",
             progress=_StopAtFold(2))
    # Folds 1 and 2 (0-based 0, 1) were kept, each in its own file; fold 3 was not.
    assert [(checkpoint / FOLD_FILE.format(n)).exists() for n in (1, 2, 3)] == [True, True, False]

    fitted_folds = _counting_fits(monkeypatch)
    resumed = _run(data, checkpoint=checkpoint, data_identity="synthetic-5").to_json()
    # Only the fold the interruption lost is measured again, once per model.
    assert fitted_folds == [2] * len(resumed["models"])
    assert _measured(resumed) == _measured(whole)
    assert [row["fold"] for row in resumed["folds"]] == [0, 1, 2]
    resumed_notes = [n for n in resumed["notes"] if "measured by another run" not in n]
    assert resumed_notes == whole["notes"]  # grid-edge notes need every fold's searched grid
    assert len(resumed["notes"]) == len(whole["notes"]) + 1
    assert any("folds 1, 2 were measured by another run" in n for n in resumed["notes"])


def test_a_checkpoint_refuses_another_runs_folds(data, tmp_path) -> None:
    checkpoint = tmp_path / "checkpoint"
    with pytest.raises(_Interrupted):
        _run(data, checkpoint=checkpoint, data_identity="synthetic-5",
             progress=_StopAtFold(1))
    with pytest.raises(CheckpointMismatch, match=r"differs in: data\)"):
        _run(data, checkpoint=checkpoint, data_identity="other data")
    with pytest.raises(CheckpointMismatch, match=r"differs in: seed\)"):
        evaluate(data, folds=3, seed=1, models=MODELS, bootstrap_samples=100,
                 checkpoint=checkpoint, data_identity="synthetic-5")
    with pytest.raises(ValueError, match="data_identity"):
        _run(data, checkpoint=tmp_path / "unnamed")


def test_cli_resumes_from_a_checkpoint_and_refuses_changed_data(tmp_path) -> None:
    from click.testing import CliRunner

    from gateway.cli import cli

    directory = tmp_path / "ratings"
    directory.mkdir()
    write_ratings_directory(directory, users=100, polls=40, seed=3)
    # Inside the data directory on purpose: the checkpoint must not change the data's digest.
    checkpoint = directory / "checkpoint"
    args = ["evaluate", "--data", str(directory), "--json", "--folds", "2",
            "--models", "most-popular,item-knn", "--checkpoint", str(checkpoint)]
    digest = directory_digest(directory)
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert directory_digest(directory) == digest
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert _measured(json.loads(again.stdout)) == _measured(json.loads(first.stdout))

    interactions = directory / "interactions.csv"
    lines = interactions.read_text().splitlines(keepends=True)
    interactions.write_text("".join(lines[:-1]))  # one event fewer: other data
    changed = CliRunner().invoke(cli, args)
    assert changed.exit_code != 0
    assert "differs in: data" in changed.output + (changed.stderr or "")


def test_a_saved_fold_survives_a_crash_the_rename_is_synced(tmp_path, monkeypatch) -> None:
    """The state is renamed into place: the rename is durable only once the directory
    holding it is synced (fsync of the file alone keeps its bytes, not its name)."""
    import os
    import stat

    from recsys.evaluation import checkpoint as checkpoint_module
    from recsys.evaluation.checkpoint import FoldCheckpoint

    store = FoldCheckpoint.open(tmp_path / "checkpoint", {"data": "d"})
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        steps.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "fsync", fsync)
    monkeypatch.setattr(checkpoint_module.os, "replace", replace)
    store.save_fold(0, {"fold": 1})
    assert steps == ["fsync file", "replace", "fsync dir"]
    assert store.load_fold(0) == {"fold": 1}



def test_two_runs_saving_into_one_checkpoint_at_once_do_not_collide(tmp_path,
                                                                    monkeypatch) -> None:
    """The same command started twice on one directory: each save writes a file of its
    own and renames it whole, so neither fails and the state is one of the two."""
    import os

    from recsys.evaluation import checkpoint as checkpoint_module
    from recsys.evaluation.checkpoint import FoldCheckpoint

    directory = tmp_path / "checkpoint"
    first = FoldCheckpoint.open(directory, {"data": "d"})
    second = FoldCheckpoint.open(directory, {"data": "d"})
    real_replace = os.replace
    interleaved: list[bool] = []

    def replace(src, dst) -> None:
        if not interleaved:  # the other run saves between this one's write and rename
            interleaved.append(True)
            second.save_fold(0, {"by": "second"})
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "replace", replace)
    first.save_fold(0, {"by": "first"})
    assert first.load_fold(0) == {"by": "first"}  # renamed last
    assert sorted(p.name for p in directory.iterdir()) == [FOLD_FILE.format(1), "run.json"]


def test_directory_digest_skips_bytecode_below_it_not_a_pycache_it_sits_in(tmp_path) -> None:
    # A checkout that happens to live under a directory named __pycache__ still hashes
    # its files; only caches inside the hashed directory are left out.
    root = tmp_path / "__pycache__" / "engine"
    (root / "__pycache__").mkdir(parents=True)
    (root / "fold.py").write_text("x = 1\n")
    before = directory_digest(root, recursive=True)
    (root / "fold.py").write_text("x = 2\n")
    assert directory_digest(root, recursive=True) != before
    changed = directory_digest(root, recursive=True)
    (root / "__pycache__" / "fold.cpython-311.pyc").write_bytes(b"\x00")
    assert directory_digest(root, recursive=True) == changed


def _counting_fits(monkeypatch) -> list[int]:
    fitted: list[int] = []
    fit = evaluate_module.PeerContender.fit

    def counting_fit(self, fold, params):
        fitted.append(fold.split.fold)
        return fit(self, fold, params)

    monkeypatch.setattr(evaluate_module.PeerContender, "fit", counting_fit)
    return fitted


def test_folds_measured_apart_in_any_order_pool_as_one_sequential_run(
        data, tmp_path, monkeypatch) -> None:
    """Two processes, each with its own folds (--only-folds), share one checkpoint; the
    run without only_folds then measures nothing and reports what one process would."""
    whole = _run(data).to_json()
    checkpoint = tmp_path / "checkpoint"
    fitted = _counting_fits(monkeypatch)
    with pytest.raises(FoldsKept, match=r"folds 3 measured here.*still to measure: 1, 2"):
        _run(data, checkpoint=checkpoint, data_identity="synthetic-5", only_folds=[2])
    with pytest.raises(FoldsKept, match=r"folds 1, 2 measured here.*every fold is in"):
        _run(data, checkpoint=checkpoint, data_identity="synthetic-5", only_folds=[0, 1, 2])
    models = len(whole["models"])
    # Fold 3 (0-based 2) was kept by the first process, so the second did not redo it.
    assert sorted(fitted) == sorted([2] * models + [0] * models + [1] * models)
    fitted.clear()
    pooled = _run(data, checkpoint=checkpoint, data_identity="synthetic-5").to_json()
    assert fitted == []
    assert _measured(pooled) == _measured(whole)
    assert [row["fold"] for row in pooled["folds"]] == [0, 1, 2]
    assert [n for n in pooled["notes"] if "measured by another run" not in n] == whole["notes"]
    assert any("folds 1, 2, 3 were measured by another run" in n for n in pooled["notes"])


def test_a_recipe_that_fails_in_one_fold_fails_the_pooled_run_whatever_the_order(
        data, tmp_path, monkeypatch) -> None:
    fit = evaluate_module.RecipeContender.fit

    def failing_in_fold_2(self, fold, params):
        if fold.split.fold == 1:
            raise RuntimeError("broken on fold 2")
        return fit(self, fold, params)

    monkeypatch.setattr(evaluate_module.RecipeContender, "fit", failing_in_fold_2)
    models = "popularity-count,most-popular"
    run = dict(folds=3, seed=0, models=models, bootstrap_samples=100)
    whole = evaluate(data, **run).to_json()
    checkpoint = tmp_path / "checkpoint"
    keep = dict(run, checkpoint=checkpoint, data_identity="synthetic-5")
    for shard in ([2], [1], [0]):  # the fold after the failure is measured first
        with pytest.raises(FoldsKept):
            evaluate(data, only_folds=shard, **keep)
    pooled = evaluate(data, **keep).to_json()
    status = {m["key"]: (m["status"], m["note"]) for m in pooled["models"]}
    assert status == {m["key"]: (m["status"], m["note"]) for m in whole["models"]}
    assert status["popularity-count"] == (
        "failed", "popularity-count failed in fold 1: RuntimeError: broken on fold 2")
    assert status["most-popular"][0] == "ok"
    assert [n for n in pooled["notes"] if "measured by another run" not in n] == whole["notes"]


def test_only_folds_needs_a_checkpoint_and_folds_of_this_run(data, tmp_path) -> None:
    from recsys.evaluation.split import EvaluationSplitError

    with pytest.raises(EvaluationSplitError, match="needs --checkpoint"):
        _run(data, only_folds=[0])
    with pytest.raises(EvaluationSplitError, match="--only-folds 4: this run has folds 1 to 3"):
        _run(data, checkpoint=tmp_path / "c", data_identity="synthetic-5", only_folds=[3])


def test_cli_only_folds_keeps_folds_silently_and_the_plain_command_reports(tmp_path) -> None:
    from click.testing import CliRunner

    from gateway.cli import cli
    from gateway.cli.evaluate import parse_fold_list

    assert parse_fold_list("1-3,5") == [0, 1, 2, 4]
    assert parse_fold_list("2") == [1]
    directory = tmp_path / "ratings"
    directory.mkdir()
    write_ratings_directory(directory, users=100, polls=40, seed=3)
    base = ["evaluate", "--data", str(directory), "--json", "--folds", "3",
            "--models", "most-popular,item-knn"]
    plain = CliRunner().invoke(cli, base)
    assert plain.exit_code == 0, plain.output
    for bad, message in (("0", "folds count from 1"), ("2-1", "folds count from 1"),
                         ("x", "not a fold number"), ("", "an empty list"),
                         ("1-10000000000", "no run has more than 10,000 folds")):
        refused = CliRunner().invoke(cli, [*base, "--checkpoint", str(tmp_path / "c"),
                                           "--only-folds", bad])
        assert refused.exit_code == 2 and message in refused.output
    no_store = CliRunner().invoke(cli, [*base, "--only-folds", "1"])
    assert no_store.exit_code == 2 and "needs --checkpoint" in no_store.output
    shard_args = [*base, "--checkpoint", str(tmp_path / "c")]
    for shard in ("3", "1-2"):
        kept = CliRunner().invoke(cli, [*shard_args, "--only-folds", shard])
        assert kept.exit_code == 0, kept.output
        assert kept.stdout == ""  # nothing of the results is printed before the run is whole
        assert "measured here" in kept.stderr
    pooled = CliRunner().invoke(cli, shard_args)
    assert pooled.exit_code == 0, pooled.output
    assert _measured(json.loads(pooled.stdout)) == _measured(json.loads(plain.stdout))


def test_a_fold_file_of_another_run_is_refused_not_pooled(data, tmp_path) -> None:
    """Fold files may be carried to another machine: each names the run that kept it."""
    import shutil

    other = tmp_path / "other"
    with pytest.raises(FoldsKept):  # other data and another tuning depth
        _run(data, checkpoint=other, data_identity="other data", tuning_folds=2, only_folds=[2])
    mine = tmp_path / "mine"
    with pytest.raises(FoldsKept):
        _run(data, checkpoint=mine, data_identity="synthetic-5", only_folds=[0, 1])
    shutil.copy(other / FOLD_FILE.format(3), mine / FOLD_FILE.format(3))
    with pytest.raises(CheckpointMismatch, match=r"fold-03.pickle was kept by another run"):
        _run(data, checkpoint=mine, data_identity="synthetic-5")


def test_an_unreadable_fold_file_is_refused_with_what_to_do(data, tmp_path) -> None:
    checkpoint = tmp_path / "checkpoint"
    with pytest.raises(FoldsKept):
        _run(data, checkpoint=checkpoint, data_identity="synthetic-5", only_folds=[0])
    path = checkpoint / FOLD_FILE.format(1)
    path.write_bytes(path.read_bytes()[:100])  # a copy cut short
    with pytest.raises(CheckpointMismatch, match=r"cannot be read .*delete it to measure fold 1"):
        _run(data, checkpoint=checkpoint, data_identity="synthetic-5", only_folds=[1])


def test_two_runs_opening_one_directory_at_once_cannot_both_write_their_options(
        tmp_path, monkeypatch) -> None:
    """Started together (one per core), both may find no run.json; only one creates it
    and the other is compared with it."""
    import os

    from recsys.evaluation import checkpoint as checkpoint_module
    from recsys.evaluation.checkpoint import FoldCheckpoint

    directory = tmp_path / "checkpoint"
    real_link = os.link
    raced: list[bool] = []

    def link(src, dst) -> None:
        if not raced:  # the other process creates run.json between this one's write and link
            raced.append(True)
            FoldCheckpoint.open(directory, {"tuning_folds": 2})
        real_link(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "link", link)
    with pytest.raises(CheckpointMismatch, match=r"differs in: tuning_folds"):
        FoldCheckpoint.open(directory, {"tuning_folds": 3})
    assert raced
    assert json.loads((directory / "run.json").read_text()) == {"tuning_folds": 2}
    assert sorted(p.name for p in directory.iterdir()) == ["run.json"]  # no temporary left


def test_a_model_missing_from_a_fold_file_fails_the_pooled_run(data, tmp_path,
                                                                monkeypatch) -> None:
    """A recipe fails in fold 1; the other process leaves it out of folds 2-3 (stopped);
    fold 1 is then measured again and succeeds. Pooling the one fold left would compare
    the recipe on other users than every other model: the run says so and fails it."""
    fit = evaluate_module.RecipeContender.fit
    failing = {"now": True}

    def flaky(self, fold, params):
        if failing["now"] and fold.split.fold == 0:
            raise MemoryError("transient")
        return fit(self, fold, params)

    monkeypatch.setattr(evaluate_module.RecipeContender, "fit", flaky)
    run = dict(folds=3, seed=0, models="popularity-count,most-popular", bootstrap_samples=100,
               checkpoint=tmp_path / "checkpoint", data_identity="synthetic-5")
    with pytest.raises(FoldsKept):
        evaluate(data, only_folds=[0], **run)
    with pytest.raises(FoldsKept):
        evaluate(data, only_folds=[1, 2], **run)
    failing["now"] = False
    (tmp_path / "checkpoint" / FOLD_FILE.format(1)).unlink()  # to measure fold 1 again
    shape = evaluate(data, **run).to_json()
    status = {m["key"]: (m["status"], m["note"]) for m in shape["models"]}
    assert status["popularity-count"][0] == "failed"
    assert "no result in fold(s) 2, 3" in status["popularity-count"][1]
    assert status["most-popular"] == ("ok", None)
