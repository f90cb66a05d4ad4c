"""User-Personalization as components: each one fits and scores on its own, the blend
learns over whichever are registered, and dropping one changes what the model serves."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.recipes.user_personalization import (
    COMPONENT_NAMES,
    UserPersonalization,
    UserPersonalizationError,
)
from recsys.recipes.user_personalization.components import REGISTRY, UserContext
from tests.recsys.test_user_personalization import NEWEST, _ten_times_the_users

USER = "pets-fan-2#3"


@pytest.fixture(scope="module")
def data():
    # Enough users for a learned blend (a validation split of training users).
    return _ten_times_the_users(seed=3)


@pytest.fixture(scope="module")
def full(data) -> UserPersonalization:
    return UserPersonalization(factors=8, iterations=8, exploration_weight=0.0).fit(data)


def _without(data, name: str, **params) -> UserPersonalization:
    return UserPersonalization(factors=8, iterations=8, exploration_weight=0.0,
                               components=[c for c in COMPONENT_NAMES if c != name],
                               **params).fit(data)


def test_every_component_scores_the_whole_catalog_with_its_own_columns(full) -> None:
    t_ref = full._reference_time(USER, None)
    features, _ = full._features(USER, t_ref)
    rows = []
    for name in COMPONENT_NAMES:
        component = full._components[name]
        score = component.score(full, UserContext(USER, t_ref))
        assert score.shape == (len(component.features), len(full.item_ids_)), name
        rows.append(score)
    # The blend's design is the registered components' columns, in registration order.
    np.testing.assert_array_equal(features, np.vstack(rows))
    assert full._blend_features() == tuple(f for c in REGISTRY.values() for f in c.features)


@pytest.mark.parametrize("name", ["item_item", "segments", "content", "collaborative", "sequence", "walk"])
def test_a_dropped_component_has_no_weight_and_changes_the_scores(data, full, name) -> None:
    model = _without(data, name)
    owned = REGISTRY[name].weights
    assert all(model.blend_[w] == 0.0 for w in owned), model.blend_
    assert not any(f in model._blend_features() for f in REGISTRY[name].features)
    assert not np.allclose(model.score_all(USER), full.score_all(USER))
    # Served scores stay the blend's own formula without it.
    t_ref = model._reference_time(USER, None)
    np.testing.assert_allclose(model.score_all(USER),
                               model._combine(*model._features(USER, t_ref), USER),
                               rtol=1e-5, atol=1e-5)


def test_dropped_components_keep_empty_state(data) -> None:
    assert _without(data, "item_item").item_item_ is None
    no_segments = _without(data, "segments")
    assert no_segments.user_segments_ == {} and no_segments.segment_lift_.shape[0] == 0
    no_collaborative = _without(data, "collaborative")
    assert not no_collaborative.item_factors_.any()


def test_recency_and_exploration_can_be_dropped(data) -> None:
    new_poll = {"fresh": {"CATEGORY": "GENERAL", "QUESTION": "Which puppy leash?",
                          "CREATION_TIMESTAMP": NEWEST}}
    exploring = UserPersonalization(factors=8, iterations=8, exploration_weight=0.5).fit(data)
    exploring.add_items(new_poll)
    assert exploring.exploration_bonus(USER).max() > 0
    quiet = UserPersonalization(factors=8, iterations=8, exploration_weight=0.5,
                                components=[c for c in COMPONENT_NAMES if c != "exploration"]
                                ).fit(data)
    quiet.add_items(new_poll)
    assert not quiet.exploration_bonus(USER).any()
    assert not _without(data, "recency").age_weights_.any()


def test_the_registered_components_survive_save_and_load(data, tmp_path) -> None:
    model = _without(data, "item_item")
    model.save(tmp_path)
    loaded = UserPersonalization.load(tmp_path)
    assert loaded.components == model.components
    np.testing.assert_allclose(loaded.score_all(USER), model.score_all(USER), rtol=1e-6)


def test_an_unknown_component_names_the_registered_ones() -> None:
    with pytest.raises(UserPersonalizationError, match="segmnts.*collaborative, content"):
        UserPersonalization(components=["segmnts"])


def test_by_default_every_component_is_registered() -> None:
    assert UserPersonalization().components == COMPONENT_NAMES == (
        "collaborative", "content", "popularity", "segments", "item_item", "recency",
        "exploration", "sequence", "walk", "rerank")
