"""A small deployment (150 users) learns its blend instead of keeping the hand-set one.

Below MIN_VALIDATION_USERS validation users UP keeps blend.DEFAULT_BLEND. At 30 (until
2026-12-06) every app below ~300 users got that fallback, and on the demo data it ranked
held-out users' polls far worse than a blend learned from the 13 validation users there
(docs/public-data.md, "The unrecorded defaults").
"""

from __future__ import annotations

import pytest

from recsys.datasets import load_directory
from recsys.demo_data import generate_demo_data
from recsys.evaluation import evaluate
from recsys.recipes.user_personalization import UserPersonalization, blend, model
from recsys.recipes.user_personalization.settings import (
    HISTORY_TWINS_MIN_USERS,
    MIN_VALIDATION_USERS,
)

NDCG = "normalized_discounted_cumulative_gain_at_10"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small-demo")
    generate_demo_data(out, users=150, polls=375, seed=1)
    return load_directory(out).training_data()


def _up_ndcg(data) -> float:
    report = evaluate(data, folds=2, seed=0, models="up", bootstrap_samples=50).to_json()
    up = next(m for m in report["models"] if m["key"] == "up")
    assert up["status"] == "ok", up["note"]
    return up["metrics"][NDCG]["mean"]


def test_a_150_user_app_learns_its_blend(small) -> None:
    up = UserPersonalization(random_state=0).fit(small)
    learned_from = up.validation_size_["users"]
    assert MIN_VALIDATION_USERS <= learned_from < 30, up.validation_size_
    assert up.blend_ != blend.default_weights(up._registered())


def test_the_learned_blend_ranks_far_better_than_the_fallback(small, monkeypatch) -> None:
    learned = _up_ndcg(small)
    # The old threshold: the same fit keeps the hand-set fallback blend.
    monkeypatch.setattr(model, "MIN_VALIDATION_USERS", 30)
    monkeypatch.setattr(blend, "MIN_VALIDATION_USERS", 30)
    fallback = _up_ndcg(small)
    # Measured over 5 folds: 0.342 learned against 0.112 with the fallback.
    assert learned - fallback > 0.1, (learned, fallback)


def test_history_twins_are_not_judged_on_halves_too_small_to_tell(tmp_path) -> None:
    # ~36 validation users drawn: enough to learn a blend, too few to judge the twins on
    # two halves (judged on halves of 18, they lost NDCG@10 on this data).
    generate_demo_data(tmp_path, users=400, polls=1000, seed=1)
    up = UserPersonalization(random_state=0).fit(load_directory(tmp_path).training_data())
    drawn = up.validation_size_["users"]
    assert 2 * MIN_VALIDATION_USERS <= drawn < HISTORY_TWINS_MIN_USERS, up.validation_size_
    assert up.validation_size_["history_twins_ndcg"] is None
    assert up.validation_size_["history_twins"] is False
