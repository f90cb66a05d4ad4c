"""Poll-text ablation, the exploration replay, and the report that shows all analyses."""

from __future__ import annotations

import json

import pytest

from recsys.analysis.exploration import (
    BREADTH_NEW,
    GINI_NEW,
    NEW_SHARE,
    UNPROVEN_SHARE,
    ExplorationReplayError,
    arm_name,
    exploration_replay,
)
from recsys.analysis.report import write_report
from recsys.analysis.text_ablation import NO_TEXT, TextAblationError, text_ablation
from recsys.analysis.trend_tuning import tune_trending
from recsys.datasets import load_directory
from recsys.demo_data import generate_demo_data
from recsys.recipes.user_personalization import TEXT_FIELDS


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("tx")
    generate_demo_data(d, users=300, polls=600, days=5, seed=2)
    return load_directory(d)


@pytest.fixture(scope="module")
def ablation(demo):
    return text_ablation(demo.interactions, demo.items, demo.users,
                         impressions=demo.impressions)


@pytest.fixture(scope="module")
def replay(demo):
    return exploration_replay(demo.interactions, demo.items, demo.users,
                              impressions=demo.impressions)


def test_every_text_field_is_ablated_overall_and_on_cold_polls(ablation):
    rows = ablation.field_contributions()
    assert {r["field"] for r in rows} == set(TEXT_FIELDS)
    assert {r["metric"] for r in rows} == {"ndcg_at_10", "cold_poll_recall_at_25",
                                           "cold_candidate_auc"}
    assert NO_TEXT in ablation.variants and ablation.cold_users > 0
    assert all(c.holm_p >= c.paired_t_p for c in ablation.comparisons)


def test_a_field_without_text_is_not_ablated_and_no_text_at_all_is_an_error(demo):
    blank = {pid: {**m, "DESCRIPTION": ""} for pid, m in demo.items.items()}
    result = text_ablation(demo.interactions, blank, demo.users,
                           fields=("QUESTION", "DESCRIPTION"))
    assert {r["field"] for r in result.field_contributions()} == {"QUESTION"}
    with pytest.raises(TextAblationError, match="no text"):
        text_ablation(demo.interactions, blank, demo.users, fields=("DESCRIPTION",))


def _compared(replay, metric, treatment, baseline):
    pool = [*replay.comparisons, *replay.arm_comparisons]
    return next(c for c in pool if c.metric == metric and c.treatment == treatment
                and c.baseline == baseline)


def test_exploration_spreads_exposure_over_new_and_unproven_polls(replay):
    assert len(replay.arms) == 6  # three weights, with and without impressions
    for with_imps in (False, True):
        more = _compared(replay, NEW_SHARE, arm_name(0.6, with_imps), arm_name(0.0, with_imps))
        assert more.difference > 0 and more.significant
        flatter = _compared(replay, GINI_NEW, arm_name(0.6, with_imps),
                            arm_name(0.0, with_imps))
        assert flatter.difference < 0 and flatter.significant
    # Without impressions the bonus lasts longest: more distinct new polls get shown and
    # more slots go to polls with fewer than UNPROVEN_INTERACTIONS votes.
    wider = _compared(replay, BREADTH_NEW, arm_name(0.6, False), arm_name(0.0, False))
    assert wider.difference > 0 and wider.significant
    unproven = _compared(replay, UNPROVEN_SHARE, arm_name(0.6, False), arm_name(0.0, False))
    assert unproven.difference > 0 and unproven.significant
    reach = replay.headroom["reachable_share"]
    assert reach["0"] == 0 < reach["0.3"] < reach["0.6"]


def test_impressions_only_act_through_the_bonus_and_shrink_it(replay):
    # At weight 0 the impressions a model has seen cannot change a single feed.
    assert replay.arms[arm_name(0.0, True)] == replay.arms[arm_name(0.0, False)]
    # Demo polls collect hundreds of impressions before a handful of votes, so with
    # impressions data the same weight explores less.
    for metric in (NEW_SHARE, UNPROVEN_SHARE):
        less = _compared(replay, metric, arm_name(0.6, True), arm_name(0.6, False))
        assert less.difference < 0 and less.significant


def test_report_shows_all_analyses_with_numbers_and_images(demo, ablation, replay, tmp_path):
    from PIL import Image

    trend = tune_trending(demo.interactions, warmup=86_400)
    page = write_report(tmp_path, trend=trend, text=ablation, exploration=replay)
    html = page.read_text()
    for title in ("Trend discovery frequency", "Poll text", "Exploration"):
        assert f"<h2>{title}" in html
    cells = [c.split("</td>")[0] for c in html.split("<td>")[1:]]
    numeric = [c for c in cells if _is_number(c)]
    assert len(numeric) > 50
    for png in ("trend_tuning.png", "text_ablation.png", "exploration.png"):
        assert f'src="{png}"' in html
        with Image.open(tmp_path / png) as im:
            im.verify()
        with Image.open(tmp_path / png) as im:
            assert im.size[0] > 100
    numbers = json.loads((tmp_path / "report.json").read_text())
    assert set(numbers) == {"trend_tuning", "text_ablation", "exploration"}
    assert numbers["exploration"]["requests"] == replay.requests
    assert len(numbers["exploration"]["arm_comparisons"]) == len(replay.arm_comparisons) > 0
    for metric in (UNPROVEN_SHARE, BREADTH_NEW, GINI_NEW):
        assert f"<th>{metric}</th>" in html


def test_replay_refuses_weights_it_cannot_compare(demo):
    with pytest.raises(ExplorationReplayError, match="include 0"):
        exploration_replay(demo.interactions, demo.items, demo.users, weights=(0.3, 0.6))
    with pytest.raises(ExplorationReplayError, match=r"\[0, 1\]"):
        exploration_replay(demo.interactions, demo.items, demo.users, weights=(0.0, 1.5))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _handmade(step: int, created: int):
    """30 users each voting on 10 of 40 polls, events ``step`` seconds apart."""
    from recsys.events import Interaction

    events = [Interaction(user_id=f"u{i % 30}", item_id=f"p{(i * 7) % 40}",
                          event_type="VOTE", timestamp=1_000_000 + i * step)
              for i in range(300)]
    items = {f"p{j}": {"CREATION_TIMESTAMP": created, "CATEGORY": "c"} for j in range(40)}
    users = {f"u{i}": {} for i in range(30)}
    return events, items, users


def test_exploration_does_not_replay_events_whose_times_are_only_an_order():
    # One second apart, as a converter orders listens that carry no time (Last.fm):
    # the replay window is seconds long, so every arm would read zeros.
    events, items, users = _handmade(step=1, created=0)
    with pytest.raises(ExplorationReplayError, match="order, not a clock"):
        exploration_replay(events, items, users)


def test_exploration_does_not_replay_when_no_poll_exists_at_the_first_request():
    events, items, users = _handmade(step=3_600, created=2_000_000_000)
    with pytest.raises(ExplorationReplayError, match="no poll was posted"):
        exploration_replay(events, items, users)


def test_field_ranking_marks_adjacent_fields_the_data_cannot_order(tmp_path):
    import numpy as np

    from recsys.analysis.stats import paired_comparison
    from recsys.analysis.text_ablation import COLD_AUC, ONLY, TextAblationResult

    rng = np.random.default_rng(0)
    none = rng.uniform(0.4, 0.6, 200)
    noise = rng.normal(0, 0.05, 200)
    # QUESTION clearly first; DESCRIPTION and OPTIONS differ by far less than the
    # per-user noise (as on the default demo, +0.0103 vs +0.0101).
    alone = {"QUESTION": none + 0.10 + noise, "DESCRIPTION": none + 0.0103 + noise,
             "OPTIONS": none + 0.0101 + rng.normal(0, 0.05, 200)}
    per_user = {ONLY + f: {COLD_AUC: v.tolist()} for f, v in alone.items()}
    per_user["no text"] = {COLD_AUC: none.tolist()}
    result = TextAblationResult(
        users=200, cold_users=200, variants={},
        comparisons=[paired_comparison(COLD_AUC, ONLY + f, "no text", v, none)
                     for f, v in alone.items()],
        fields=tuple(alone), per_user=per_user)
    ranking = result.field_ranking()
    # Which of the two comes second is noise: the ranking must say so.
    assert ranking[0]["field"] == "QUESTION"
    assert {r["field"] for r in ranking[1:]} == {"DESCRIPTION", "OPTIONS"}
    assert [r["tied_with_next"] for r in ranking] == [False, True, None]
    assert ranking[0]["vs_next_ci_low"] > 0
    assert ranking[1]["vs_next_ci_low"] <= 0 <= ranking[1]["vs_next_ci_high"]
    assert json.loads(json.dumps(result.to_json()))["field_ranking"][1]["tied_with_next"]
    page = write_report(tmp_path, text=result).read_text()
    assert "tied_with_next" in page
