"""EVENT_VALUE in training: per-type thresholds (Personalize) and value as confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.event_values import EventValues, InvalidEventValues
from recsys.events import Interaction


def _event(event_type: str, value: float | None, user: str = "u1", item: str = "p1",
           t: int = 1) -> Interaction:
    return Interaction(user, item, event_type, t, event_value=value)


def test_threshold_applies_per_event_type_case_insensitively() -> None:
    values = EventValues.parse("rating=4, click=1")
    assert values.thresholds == {"RATING": 4.0, "CLICK": 1.0}
    assert values.keeps(_event("RATING", 4.0)) and values.keeps(_event("Rating", 5.0))
    assert not values.keeps(_event("RATING", 3.5))
    assert not values.keeps(_event("RATING", None))  # no value cannot meet a threshold
    assert values.keeps(_event("HUNCH", None))  # types without a threshold always train


@pytest.mark.parametrize("mode, value, expected", [
    ("none", 5.0, 1.0), ("value", 5.0, 5.0), ("log", 5.0, 1.0 + math.log(5.0)),
    ("value", None, 1.0), ("log", 0.0, 1.0),
])
def test_confidence_of_an_event(mode: str, value: float | None, expected: float) -> None:
    assert EventValues(confidence=mode).weight(_event("RATING", value)) == pytest.approx(expected)


@pytest.mark.parametrize("thresholds, confidence, message", [
    ("RATING", "none", "EVENT_TYPE=VALUE"),
    ("RATING=high", "none", "must be a number"),
    ("", "square", "one of none, value, log"),
    ("=3", "none", "needs an event type"),
])
def test_bad_settings_say_what_to_write(thresholds: str, confidence: str, message: str) -> None:
    with pytest.raises(InvalidEventValues, match=message):
        EventValues.parse(thresholds, confidence)


def test_round_trips_through_json() -> None:
    values = EventValues.parse("RATING=4", "log")
    assert EventValues.coerce(values.to_json()) == values
    assert EventValues.coerce(None) is None


def test_peer_matrix_drops_events_below_threshold_and_sums_confidence() -> None:
    from recsys.evaluation import UserItemMatrix

    events = [_event("RATING", 5.0, "u1", "a"), _event("RATING", 2.0, "u1", "b"),
              _event("RATING", 3.0, "u2", "a"), _event("RATING", 4.0, "u2", "a", t=2)]
    plain = UserItemMatrix.build(events, ["a", "b"])
    assert plain.matrix.toarray().tolist() == [[1, 1], [2, 0]]
    cut = UserItemMatrix.build(events, ["a", "b"], EventValues.parse("RATING=3", "value"),
                               users=["u3"])
    dense = cut.matrix.toarray()
    assert dense[cut.user_row["u1"]].tolist() == [5, 0]
    assert dense[cut.user_row["u2"]].tolist() == [7, 0]
    assert dense[cut.user_row["u3"]].tolist() == [0, 0]  # kept, though without events


def _ratings(users: int = 60, polls: int = 40, seed: int = 0):
    from tests.recsys._evaluation_data import synthetic_polls

    return synthetic_polls(users=users, polls=polls, seed=seed, ratings=True)


def test_user_personalization_trains_only_on_events_at_or_above_the_threshold(tmp_path) -> None:
    from recsys.recipes.user_personalization import UserPersonalization

    data = _ratings()
    low = [e for e in data.interactions if e.event_value < 4]
    assert low
    model = UserPersonalization(exploration_weight=0.0, learn_blend=False,
                                event_values=EventValues.parse("RATING=4")).fit(data)
    counts = dict(zip(model.item_ids_, model.counts_.tolist()))
    kept = [e for e in data.interactions if e.event_value >= 4]
    for item in {e.item_id for e in data.interactions}:
        assert counts[item] == sum(1 for e in kept if e.item_id == item)
    # A streamed event below the threshold is not folded in either.
    import copy

    import numpy as np

    before = copy.deepcopy(model.recent_.get(low[0].user_id))
    counts_before = model.counts_.copy()
    model.observe([_event("RATING", 1.0, low[0].user_id, low[0].item_id, t=2_000_000_000)])
    after = model.recent_.get(low[0].user_id)
    # Unchanged, not merely the same length (a full history keeps its length).
    assert (before is None) == (after is None)
    if before is not None:
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(before, after))
    assert np.array_equal(model.counts_, counts_before)
    model.save(tmp_path / "up")
    assert UserPersonalization.load(tmp_path / "up").event_values == model.event_values


def test_value_as_confidence_weighs_up_s_history() -> None:
    from recsys.recipes.user_personalization import UserPersonalization

    data = _ratings()
    model = UserPersonalization(exploration_weight=0.0, learn_blend=False,
                                event_values=EventValues(confidence="value")).fit(data)
    user = data.interactions[-1].user_id
    items, weights, _ = model.recent_[user]
    by_item = {(e.item_id): e.event_value for e in data.interactions if e.user_id == user}
    expected = [by_item[model.item_ids_[i]] for i in items]
    np.testing.assert_allclose(weights, expected)


def test_evaluation_hands_event_values_to_peers_and_up() -> None:
    from recsys.evaluation import evaluate

    data = _ratings(users=120, polls=50, seed=1)
    values = EventValues.parse("RATING=4", "value")
    report = evaluate(data, folds=2, seed=0, models="up,ease-textbook-200,trending-now",
                      bootstrap_samples=20, event_values=values)
    assert all(m.status == "ok" for m in report.models), [m.note for m in report.models]
    shape = report.to_json()
    assert shape["protocol"]["event_values"] == {"thresholds": {"RATING": 4.0},
                                                 "confidence": "value"}
    assert any(n.startswith("trending-now trains on every event") for n in shape["notes"])
    assert not any(n.startswith("up trains on every event") for n in shape["notes"])
    import jsonschema

    from recsys.evaluation import report_json_schema

    jsonschema.Draft202012Validator(report_json_schema()).validate(shape)
