"""`evaluate` and `hunch evaluate` end to end on small synthetic datasets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.evaluation import MODEL_KEYS, PERSONALIZE_METRICS, UnknownModel, evaluate, parse_models
from recsys.evaluation.split import EvaluationSplitError
from tests.recsys._evaluation_data import synthetic_polls, write_ratings_directory

PEERS = "ease,bpr,item-knn,rp3beta,most-popular,random"  # ALS alone below: its grid is the slow part
REPO = Path(__file__).resolve().parents[2]
ESTIMATE_KEYS = {"mean", "ci_low", "ci_high", "users"}


@pytest.fixture(scope="module")
def data():
    return synthetic_polls(users=200, polls=70, seed=11)


@pytest.fixture(scope="module")
def report(data):
    return evaluate(data, folds=2, seed=0, models=PEERS, bootstrap_samples=200)


def test_every_peer_runs_and_beats_random_where_it_should(report) -> None:
    shape = report.to_json()
    by_key = {m["key"]: m for m in shape["models"]}
    # Each family runs its tuned and its textbook configurations.
    assert set(by_key) == set(PEERS.split(",")) | {
        "ease-textbook-200", "ease-textbook-500", "item-knn-shrink", "rp3beta-textbook"}
    assert set(by_key) == set(parse_models(PEERS))
    assert all(m["status"] == "ok" for m in by_key.values())
    assert by_key["ease"]["configuration"] == "tuned"
    assert by_key["ease-textbook-200"]["configuration"] == "textbook"
    assert by_key["ease-textbook-200"]["family"] == "ease"
    ndcg = {k: m["metrics"]["normalized_discounted_cumulative_gain_at_10"]["mean"]
            for k, m in by_key.items()}
    # Users follow topics in this data: learning peers must find that, random cannot.
    for key in ("ease", "ease-textbook-200", "item-knn", "item-knn-shrink", "rp3beta",
                "rp3beta-textbook"):
        assert ndcg[key] > ndcg["random"] + 0.05, ndcg


def test_als_is_tuned_on_its_grid_and_learns(data) -> None:
    shape = evaluate(data, models="als,random", folds=2, seed=1, bootstrap_samples=50).to_json()
    by_key = {m["key"]: m for m in shape["models"]}
    assert list(by_key) == ["als", "als-textbook-128", "als-textbook-64", "random"]
    assert all(m["status"] == "ok" for m in by_key.values())
    als, rnd = by_key["als"], by_key["random"]
    from recsys.evaluation import ALS

    # Chosen from the grid or from steps past its edges (never left at a library default).
    assert all(set(p) == set(ALS.GRID) for p in als["hyperparameters"])
    assert by_key["als-textbook-128"]["hyperparameters"] == [{}, {}]  # never tuned
    ndcg = "normalized_discounted_cumulative_gain_at_10"
    assert als["metrics"][ndcg]["mean"] > rnd["metrics"][ndcg]["mean"] + 0.05


def test_hyperparameters_are_chosen_per_fold_from_the_grids(report) -> None:
    shape = report.to_json()
    ease = next(m for m in shape["models"] if m["key"] == "ease")
    assert len(ease["hyperparameters"]) == 2
    for params in ease["hyperparameters"]:
        assert params["l2"] in (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
        assert params["weighting"] in ("binary", "log")


def _validate(shape: dict) -> None:
    """Raise when ``shape`` breaks the documented JSON Schema (report.schema.json)."""
    import jsonschema

    from recsys.evaluation import report_json_schema

    schema = report_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(shape)


def test_json_validates_against_its_documented_schema(report) -> None:
    shape = json.loads(json.dumps(report.to_json(), allow_nan=False))  # valid strict JSON
    _validate(shape)


def test_schema_rejects_a_report_that_drifts_from_it(report) -> None:
    import jsonschema

    shape = json.loads(json.dumps(report.to_json()))
    drifted = json.loads(json.dumps(shape))
    drifted["models"][0]["metrics"]["ndcg10"] = drifted["models"][0]["metrics"].pop(
        "normalized_discounted_cumulative_gain_at_10")  # a renamed metric
    with pytest.raises(jsonschema.ValidationError):
        _validate(drifted)
    drifted = json.loads(json.dumps(shape))
    del drifted["models"][0]["slices"]["heavy_users"]  # a missing slice
    with pytest.raises(jsonschema.ValidationError):
        _validate(drifted)


def test_json_shape_is_the_documented_one(report) -> None:
    shape = json.loads(json.dumps(report.to_json(), allow_nan=False))  # valid strict JSON
    assert set(shape) == {"schema_version", "dataset", "protocol", "folds", "models",
                          "comparison", "text_on_cold_polls", "text_on_cold_candidates",
                          "notes"}
    assert shape["schema_version"] == 1
    assert set(shape["dataset"]) == {"users", "items", "interactions"}
    assert shape["protocol"]["split"] == "personalize" and shape["protocol"]["folds"] == 2
    assert [f["fold"] for f in shape["folds"]] == [0, 1]
    for model in shape["models"]:
        assert {"key", "name", "kind", "status", "note", "fit_seconds", "tune_seconds",
                "hyperparameters", "metrics", "per_fold", "slices"} <= set(model)
        assert set(model["metrics"]) == set(PERSONALIZE_METRICS) | {"recall_at_25"}
        for estimate in model["metrics"].values():
            assert set(estimate) == ESTIMATE_KEYS
        assert set(model["slices"]) == {"cold_polls", "cold_candidates", "cold_users",
                                        "heavy_users"}
        assert len(model["per_fold"]) == 2
    # No UP in this run: the comparison is absent, not invented.
    assert shape["comparison"] is None


def test_folds_score_every_eligible_user_once(data, report) -> None:
    shape = report.to_json()
    users = sum(f["scored_users"] for f in shape["folds"])
    ease = next(m for m in shape["models"] if m["key"] == "ease")
    assert ease["metrics"]["precision_at_5"]["users"] == users
    assert users > 150  # nearly everyone of the 200 users is held out once


def test_tuning_and_training_never_see_relevant_events(data, monkeypatch) -> None:
    from recsys.evaluation import evaluate as evaluate_fn
    from recsys.evaluation import peers, user_folds

    built: list[set[str]] = []  # event ids of every matrix a peer trains or tunes on
    real_build = peers.UserItemMatrix.build.__func__

    def spy(cls, interactions, catalog, *args, **kwargs):
        interactions = list(interactions)
        built.append({e.event_id for e in interactions})
        return real_build(cls, interactions, catalog, *args, **kwargs)

    monkeypatch.setattr(peers.UserItemMatrix, "build", classmethod(spy))
    evaluate_fn(data, folds=2, seed=3, models="ease", bootstrap_samples=50, tuning_folds=3)
    folds = user_folds(data.interactions, 2, seed=3)
    per_fold = 1 + 3  # per fold: its training matrix, then one per inner tuning fold
    assert len(built) == 2 * per_fold
    for fold in folds:
        hidden = {e.event_id for u in fold.held_out.values() for e in u.relevant_events}
        for matrix_events in built[per_fold * fold.fold: per_fold * (fold.fold + 1)]:
            assert hidden and matrix_events and matrix_events.isdisjoint(hidden)


def test_ease_is_skipped_with_a_note_past_its_catalog_limit(data) -> None:
    shape = evaluate(data, models="ease,most-popular", ease_max_items=10,
                     bootstrap_samples=50).to_json()
    ease = next(m for m in shape["models"] if m["key"] == "ease")
    assert ease["status"] == "skipped" and "--ease-max-items" in ease["note"]
    assert any("ease skipped" in n for n in shape["notes"])
    _validate(shape)  # skipped models keep the documented shape too


def test_temporal_split_runs_and_refuses_folds(data) -> None:
    shape = evaluate(data, split="temporal", models="most-popular,item-knn",
                     bootstrap_samples=50).to_json()
    assert shape["folds"][0]["cutoff"] is not None
    with pytest.raises(EvaluationSplitError, match="--folds"):
        evaluate(data, split="temporal", folds=3, models="random")


def test_unknown_model_names_the_valid_ones(data) -> None:
    with pytest.raises(UnknownModel, match="item-knn"):
        evaluate(data, models="als,knnn")
    assert "up" in MODEL_KEYS and "ease" in MODEL_KEYS


def _hunch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from gateway.cli import main; main()", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def ratings_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("ratings")
    write_ratings_directory(directory, users=120, polls=50, seed=2)
    return directory


def test_cli_prints_a_table_on_a_ratings_dataset(ratings_dir) -> None:
    run = _hunch("evaluate", "--data", str(ratings_dir), "--models", "most-popular,item-knn,random")
    assert run.returncode == 0, run.stderr
    assert "NDCG@10" in run.stdout and "item-knn" in run.stdout and "most-popular" in run.stdout
    assert "UP / best peer" in run.stdout


def _hunch_in_process(*args: str):
    from click.testing import CliRunner

    from gateway.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_cli_json_is_parseable_and_stable(ratings_dir) -> None:
    run = _hunch_in_process("evaluate", "--data", str(ratings_dir), "--json", "--seed", "4",
                            "--models", "random,most-popular")
    assert run.exit_code == 0, run.output
    shape = json.loads(run.stdout)
    assert shape["schema_version"] == 1 and shape["protocol"]["seed"] == 4
    assert [m["key"] for m in shape["models"]] == ["random", "most-popular"]


def test_cli_rejects_an_unknown_model_in_one_line(ratings_dir) -> None:
    run = _hunch_in_process("evaluate", "--data", str(ratings_dir), "--models", "alss")
    assert run.exit_code == 2
    assert "unknown model(s) alss" in run.stderr


def test_our_recipes_run_through_the_recipe_protocol(data) -> None:
    import importlib.util

    if importlib.util.find_spec("recsys.recipes.user_personalization") is None:
        pytest.skip("recsys/recipes/user_personalization.py not written yet")
    shape = evaluate(data, models="up,up-notext,popularity-count,trending-now,item-knn",
                     seed=2, bootstrap_samples=100).to_json()
    by_key = {m["key"]: m for m in shape["models"]}
    for key in ("up", "up-notext", "popularity-count", "trending-now"):
        assert by_key[key]["kind"] == "recipe"
        assert by_key[key]["status"] == "ok", by_key[key]["note"]
    assert shape["comparison"]["best_peer"] == "item-knn"
    assert shape["comparison"]["ratio"]["mean"] > 0
    # Each fold records what UP's own fit chose (history twins, blend, ...); a peer's
    # choice is its hyperparameters, and a recipe without a fit summary records none.
    for fold in by_key["up"]["per_fold"]:
        assert set(fold["fit"]) == {"validation_users", "history_twins", "history_twins_ndcg",
                                    "blend", "item_item_l2", "walk_beta", "rerank"}
        assert fold["fit"]["blend"], "the weights UP served in that fold"
        assert isinstance(fold["fit"]["rerank"]["on"], bool)  # and what judged it, if any
    assert all(f["fit"] is None for key in ("item-knn", "popularity-count")
               for f in by_key[key]["per_fold"])
    assert set(shape["text_on_cold_polls"]) == {"with_text", "without_text", "difference"}
    assert set(shape["text_on_cold_candidates"]) == {"with_text", "without_text",
                                                     "difference", "ratio"}
    _validate(shape)


def test_a_tuned_value_on_the_edge_of_its_grid_is_reported() -> None:
    from recsys.evaluation.evaluate import ModelResult, _FoldOutcome, _grid_edge_notes

    def fold(params: dict) -> _FoldOutcome:
        return _FoldOutcome(0, {}, 0.0, None, None, None, 0.0, 0.0, params)

    result = ModelResult("ease", "ease", "peer", folds=[
        fold({"l2": 1000.0, "weighting": "log"}), fold({"l2": 1000.0, "weighting": "binary"}),
        fold({"l2": 200.0, "weighting": "log"})])
    notes = _grid_edge_notes("ease", {"l2": (50.0, 200.0, 1000.0), "weighting": ("binary", "log")},
                             result)
    assert len(notes) == 1 and "l2=1000, the largest value tried, won in 2/3" in notes[0]
    inside = ModelResult("ease", "ease", "peer", folds=[fold({"l2": 200.0})] * 3)
    assert _grid_edge_notes("ease", {"l2": (50.0, 200.0, 1000.0)}, inside) == []


class SpyRecipe:
    """A recipe that remembers what it was trained on (driven like ours, by protocol)."""

    name = "spy-recipe"
    seen: list = []

    def fit(self, data):
        SpyRecipe.seen.append(data)
        return self

    def recommend(self, user_id, n, now=None, exclude=(), allow=None):
        return []


def test_recipes_never_see_relevant_events_or_the_impressions_around_them(data, monkeypatch) -> None:
    import importlib

    from recsys.evaluation import evaluate as evaluate_fn
    from recsys.evaluation import user_folds
    from recsys.events import Impression
    from recsys.recipes.base import TrainingData

    # The package re-exports the function under the module's name; fetch the module.
    module = importlib.import_module("recsys.evaluation.evaluate")
    monkeypatch.setitem(module._RECIPES, "popularity-count", (__name__, "spy-recipe", {}))
    SpyRecipe.seen = []
    # What each user was shown right when they acted: a hint at the relevant polls.
    impressions = [Impression(e.user_id, (e.item_id,), e.timestamp) for e in data.interactions]
    with_impressions = TrainingData(data.interactions, data.items, data.users, impressions)
    evaluate_fn(with_impressions, folds=2, seed=5, models="popularity-count", bootstrap_samples=50)
    assert len(SpyRecipe.seen) == 2
    for fold, seen in zip(user_folds(data.interactions, 2, seed=5), SpyRecipe.seen):
        hidden = {e.event_id for u in fold.held_out.values() for e in u.relevant_events}
        assert hidden and hidden.isdisjoint(e.event_id for e in seen.interactions)
        hidden_pairs = {(u.user_id, e.item_id, e.timestamp)
                        for u in fold.held_out.values() for e in u.relevant_events}
        shown = {(i.user_id, i.item_ids[0], i.timestamp) for i in seen.impressions}
        assert shown and shown.isdisjoint(hidden_pairs)


def test_tuning_follows_a_knob_past_the_edge_of_its_grid(monkeypatch) -> None:
    import importlib
    import math

    module = importlib.import_module("recsys.evaluation.evaluate")
    # Validation NDCG peaks at regularization 100, past the grid's largest value 10.
    monkeypatch.setattr(module, "_headline",
                        lambda fold, contender, p: -abs(math.log10(p["regularization"] / 100)))
    contender = module.PeerContender("als", ALS_FACTORY, {"regularization": (0.1, 1.0, 10.0)})
    assert contender.tune(None, 0) == {"regularization": 100.0}
    assert contender.searched["regularization"] == {0.1, 1.0, 10.0, 100.0, 1000.0}
    # 100 lies inside what was tried (up to 1,000), so no "edge" note is due.
    result = module.ModelResult("als", "als", "peer", folds=[
        module._FoldOutcome(0, {}, 0.0, None, None, None, 0.0, 0.0, {"regularization": 100.0})])
    assert module._grid_edge_notes("als", contender.searched, result) == []


def ALS_FACTORY(**kwargs):  # never fitted: the test replaces validation scoring
    raise AssertionError("not used")


def test_cold_candidates_recall_is_at_least_the_full_lists() -> None:
    # A top 25 drawn from cold polls only holds at least the cold polls the full top 25
    # holds, for the same users as the full-list cold slice.
    data = synthetic_polls(users=200, polls=400, seed=11)
    report = evaluate(data, models="up,up-notext,most-popular", seed=0, bootstrap_samples=50)
    gained = False
    for m in report.ok_models():
        full = m.pooled_slice("recall_at_25", "cold_polls")
        among = m.pooled_slice("recall_at_25", "cold_candidates")
        assert len(among) == len(full) > 0
        assert (among >= full - 1e-9).all()
        gained |= among.mean() > full.mean()
    assert gained
    shape = report.to_json()
    assert shape["text_on_cold_candidates"]["with_text"]["users"] == len(
        report.model("up").pooled_slice("recall_at_25", "cold_candidates"))
    _validate(shape)


class BrokenRecipe:
    """A recipe whose fit raises, as a bug in one of ours would."""

    name = "broken-recipe"

    def fit(self, data):
        raise RuntimeError("planted bug")

    def recommend(self, user_id, n, now=None, exclude=()):
        return []


def test_cli_exits_non_zero_when_a_model_failed(ratings_dir, monkeypatch) -> None:
    import importlib

    module = importlib.import_module("recsys.evaluation.evaluate")
    monkeypatch.setitem(module._RECIPES, "popularity-count", (__name__, "broken-recipe", {}))
    for extra in ((), ("--json",)):
        run = _hunch_in_process("evaluate", "--data", str(ratings_dir), *extra,
                                "--models", "popularity-count,most-popular")
        assert run.exit_code == 1, run.output
        assert "popularity-count failed in fold 0: RuntimeError: planted bug" in run.stderr
        assert "most-popular" in run.stdout  # the other models' numbers are still shown


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    from recsys.demo_data import generate_demo_data

    directory = tmp_path_factory.mktemp("demo")
    generate_demo_data(directory, users=80, polls=60, days=3, seed=3)
    return directory


def _items_seen_per_fold(data, monkeypatch, **kwargs) -> tuple[list, object]:
    import importlib

    module = importlib.import_module("recsys.evaluation.evaluate")
    monkeypatch.setitem(module._RECIPES, "popularity-count", (__name__, "spy-recipe", {}))
    SpyRecipe.seen = []
    report = module.evaluate(data, folds=2, seed=0, models="popularity-count",
                             bootstrap_samples=20, **kwargs)
    assert report.model("popularity-count").status == "ok", report.model("popularity-count").note
    return [seen.items for seen in SpyRecipe.seen], report


def test_comments_reach_a_model_only_from_its_folds_training_events(demo_dir, monkeypatch) -> None:
    from recsys.datasets import clean_text, load_directory
    from recsys.demo_data import read_comments
    from recsys.evaluation import user_folds

    data = load_directory(demo_dir).training_data()
    texts = read_comments(demo_dir)
    seen_items, _ = _items_seen_per_fold(data, monkeypatch, comment_texts=texts)
    folds = user_folds(data.interactions, 2, seed=0)
    assert len(seen_items) == len(folds) == 2
    leaked_any = False
    for fold, items in zip(folds, seen_items):
        future = [clean_text(texts[u.user_id, e.item_id, e.timestamp])
                  for u in fold.held_out.values() for e in u.relevant_events
                  if e.event_type == "COMMENT"]
        trained = {(e.item_id, clean_text(texts[e.user_id, e.item_id, e.timestamp]))
                   for e in fold.training if e.event_type == "COMMENT"}
        assert future and trained
        # On the whole data some of these future comments are in their poll's preview.
        leaked_any |= any(t in (r.get("COMMENTS") or "") for t in future
                          for r in data.items.values())
        shown = " ".join(r.get("COMMENTS") or "" for r in items.values())
        assert not [t for t in future if t in shown]
        # Rebuilt, not just emptied: training comments' texts are there.
        assert any(t in (items[i].get("COMMENTS") or "") for i, t in trained)
    assert leaked_any  # otherwise this test could not fail


def test_comments_without_their_texts_are_dropped_with_a_note(demo_dir, monkeypatch) -> None:
    from recsys.datasets import load_directory

    data = load_directory(demo_dir).training_data()
    assert any(r.get("COMMENTS") for r in data.items.values())
    seen_items, report = _items_seen_per_fold(data, monkeypatch)
    assert seen_items and all(r.get("COMMENTS") is None
                              for items in seen_items for r in items.values())
    assert any("COMMENTS dropped" in n for n in report.notes)
    assert all(r.get("QUESTION") for items in seen_items for r in items.values())


def test_ratio_is_taken_against_the_best_peer_configuration_on_the_test_folds(
        data, monkeypatch) -> None:
    import importlib

    import numpy as np

    module = importlib.import_module("recsys.evaluation.evaluate")
    # A tuning that lands far off (lambda so large EASE is nearly popularity): the
    # textbook configurations are then better on the test users, and must be the bar.
    monkeypatch.setattr(module.EaseContender, "tune",
                        lambda self, validation, seed: {"l2": 1e7, "weighting": "binary"})
    report = evaluate(data, folds=2, seed=0, models="up,ease,most-popular", bootstrap_samples=50)
    assert all(m.status == "ok" for m in report.models), [m.note for m in report.models]
    ndcg = {m.key: float(np.mean(m.pooled("normalized_discounted_cumulative_gain_at_10")))
            for m in report.ok_models() if m.kind == "peer"}
    assert set(ndcg) == {"ease", "ease-textbook-200", "ease-textbook-500", "most-popular"}
    best = max(ndcg, key=ndcg.get)
    assert report.model(best).configuration == "textbook" and ndcg[best] > ndcg["ease"]
    comparison = report.to_json()["comparison"]
    assert comparison["best_peer"] == best
    assert sorted(comparison["peers"]) == sorted(ndcg)
    up = float(np.mean(report.model("up").pooled("normalized_discounted_cumulative_gain_at_10")))
    assert comparison["ratio"]["mean"] == pytest.approx(up / ndcg[best])
    assert any(n.startswith("ease (tuned)") and "did not transfer" in n for n in report.notes)
    _validate(report.to_json())


NDCG10 = "normalized_discounted_cumulative_gain_at_10"


def test_ablating_a_component_runs_up_without_it_and_reports_its_contribution(data) -> None:
    shape = evaluate(data, models="most-popular", folds=2, seed=2, ablate=["item-item"],
                     bootstrap_samples=100).to_json()
    by_key = {m["key"]: m for m in shape["models"]}
    # UP runs too: a contribution is measured against it, on the same folds and users.
    assert list(by_key) == ["most-popular", "up", "up-without-item_item"]
    assert all(m["status"] == "ok" for m in by_key.values()), [m["note"] for m in by_key.values()]
    [contribution] = shape["contributions"]
    assert contribution["component"] == "item_item"
    assert contribution["model"] == "up-without-item_item" and contribution["metric"] == NDCG10
    with_, without = contribution["with"]["mean"], contribution["without"]["mean"]
    assert with_ == by_key["up"]["metrics"][NDCG10]["mean"]
    assert without == by_key["up-without-item_item"]["metrics"][NDCG10]["mean"]
    # Dropping UP's item-item component changes its lists (an ignored --ablate would not).
    assert without != with_
    difference = contribution["difference"]
    assert difference["mean"] == pytest.approx(with_ - without)
    assert difference["ci_low"] <= difference["mean"] <= difference["ci_high"]
    _validate(shape)


def test_an_unknown_component_to_ablate_names_the_registered_ones(data) -> None:
    from recsys.evaluation import UnknownComponent

    with pytest.raises(UnknownComponent, match="segmnts.*registers: collaborative, content"):
        evaluate(data, models="up", ablate=["segmnts"])


def test_cli_prints_each_ablated_components_contribution(ratings_dir) -> None:
    run = _hunch_in_process("evaluate", "--data", str(ratings_dir), "--models", "up",
                            "--ablate", "item_item", "--ablate", "popularity")
    assert run.exit_code == 0, run.output
    assert "what each User-Personalization component adds" in run.stdout
    table = run.stdout.split("what each User-Personalization component adds")[1]
    assert "item_item" in table and "popularity" in table
    assert "up's fit chose: history twins in 0 of 1 fold(s)" in run.stdout
    bad = _hunch_in_process("evaluate", "--data", str(ratings_dir), "--ablate", "segmnts")
    assert bad.exit_code == 2
    assert "unknown component(s) segmnts" in bad.stderr and "item_item" in bad.stderr


def test_few_scored_users_and_constant_scores_are_said_not_hidden(data, report) -> None:
    """A run on a handful of users printed tight, even zero-width intervals without a
    word: the report now says when its intervals come from few users, and which
    model's come from users who all scored the same."""
    few = synthetic_polls(users=25, polls=30, seed=3)
    notes = evaluate(few, folds=2, seed=0, models="most-popular,random",
                     bootstrap_samples=50).notes
    small = [n for n in notes if n.startswith("only ")]
    assert len(small) == 1 and "held-out user(s) were scored" in small[0]
    scored = len(report.model("most-popular").pooled("normalized_discounted_cumulative_gain_at_10"))
    assert scored >= 100  # the module's run has enough users: no such note there
    assert not any(n.startswith("only ") for n in report.notes)
    assert not any("has no width" in n for n in report.notes)


def test_a_model_every_user_scores_the_same_on_is_named() -> None:
    import numpy as np

    from recsys.evaluation.evaluate import (
        HEADLINE_METRIC,
        ModelResult,
        _FoldOutcome,
        _small_sample_notes,
    )

    def result(key, values):
        empty = np.zeros(0)
        outcome = _FoldOutcome(0, {HEADLINE_METRIC: np.array(values)}, 1.0, empty, empty,
                               empty, 1.0, 0.0, {})
        return ModelResult(key, key, "peer", folds=[outcome])

    notes = _small_sample_notes([result("random", [0.0] * 150),
                                 result("ease", [0.0, 0.5] * 75)])
    assert notes == ["random: every scored user has the same NDCG@10, so its interval has "
                     "no width; that is the sample's, not a certainty"]
