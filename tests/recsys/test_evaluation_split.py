"""The split's promises: no leakage of what must be predicted, folds that partition."""

from __future__ import annotations

import pytest

from recsys.evaluation import (
    EvaluationSplitError,
    personalize_split,
    temporal_split,
    user_folds,
    validation_split,
)
from recsys.evaluation.split import eligible_users
from recsys.events import Impression, Interaction
from tests.recsys._evaluation_data import synthetic_polls


@pytest.fixture(scope="module")
def events() -> list[Interaction]:
    return list(synthetic_polls(users=150, polls=60, seed=3).interactions)


def _hidden_ids(split) -> set[str]:
    return {e.event_id for u in split.held_out.values() for e in u.relevant_events}


def test_relevant_events_never_reach_training_or_tuning(events) -> None:
    for split in user_folds(events, 5, seed=1):
        hidden = _hidden_ids(split)
        assert hidden
        assert hidden.isdisjoint(e.event_id for e in split.training)
        tuning = validation_split(split, seed=2)
        # Tuning sees neither the hidden events nor anything of the held-out users.
        seen_in_tuning = {e.event_id for e in tuning.training} | _hidden_ids(tuning)
        assert hidden.isdisjoint(seen_in_tuning)
        assert set(tuning.held_out).isdisjoint(split.held_out)
        assert {e.user_id for e in tuning.training}.isdisjoint(split.held_out)


def test_held_out_input_is_older_and_kept_for_training(events) -> None:
    split = personalize_split(events, seed=0)
    training_ids = {e.event_id for e in split.training}
    for user in split.held_out.values():
        assert max(e.timestamp for e in user.input) < min(e.timestamp for e in user.relevant_events)
        assert {e.event_id for e in user.input} <= training_ids  # Personalize folds input in
        assert 1 <= len(user.relevant_events) <= max(1, len(user.input))


def test_personalize_split_holds_out_a_tenth_of_users_reproducibly(events) -> None:
    users = {e.user_id for e in events}
    first, again = personalize_split(events, seed=7), personalize_split(events, seed=7)
    other = personalize_split(events, seed=8)
    assert len(first.held_out) == round(len(users) * 0.1)
    assert set(first.held_out) == set(again.held_out)
    assert set(first.held_out) != set(other.held_out)


def test_folds_partition_eligible_users(events) -> None:
    folds = user_folds(events, 10, seed=4)
    held = [set(f.held_out) for f in folds]
    assert sum(len(h) for h in held) == len(set().union(*held))  # nobody twice
    assert set().union(*held) == set(eligible_users(events))  # everybody once


def test_users_with_one_event_are_never_held_out() -> None:
    events = [Interaction("solo", "p1", "HUNCH", 100)] + [
        Interaction(f"u{i}", f"p{j}", "HUNCH", 100 + 10 * j) for i in range(20) for j in range(3)
    ]
    for split in user_folds(events, 4, seed=0):
        assert "solo" not in split.held_out
        assert "solo" in split.training_users


def test_same_second_events_stay_on_one_side() -> None:
    events = [Interaction("u", f"p{j}", "HUNCH", 100 if j < 9 else 200) for j in range(10)]
    events += [Interaction("v", f"p{j}", "HUNCH", 100) for j in range(5)]  # one instant only
    events += [Interaction("w", f"p{j}", "HUNCH", 100 + j) for j in range(3)]
    split = user_folds(events, 2, seed=0)
    held = {u for s in split for u in s.held_out}
    assert held == {"u", "w"}
    user = next(s.held_out["u"] for s in split if "u" in s.held_out)
    assert {e.timestamp for e in user.relevant_events} == {200}


def test_temporal_split_cuts_at_one_time(events) -> None:
    split = temporal_split(events)
    assert split.cutoff is not None
    assert all(e.timestamp < split.cutoff for e in split.training)
    for user in split.held_out.values():
        assert all(e.timestamp >= split.cutoff for e in user.relevant_events)
    tuning = validation_split(split)
    assert tuning.cutoff is not None and tuning.cutoff <= split.cutoff


def test_impressions_after_a_users_hidden_events_are_withheld(events) -> None:
    split = personalize_split(events, seed=0)
    user = next(iter(split.held_out.values()))
    before = Impression(user.user_id, ("p1",), user.cutoff - 1)
    after = Impression(user.user_id, ("p1",), user.cutoff)
    assert split.training_impressions([before, after]) == [before]


def test_too_few_users_for_the_folds_is_a_clear_error() -> None:
    events = [Interaction("u", "p1", "HUNCH", 1), Interaction("u", "p2", "HUNCH", 2)]
    with pytest.raises(EvaluationSplitError, match="fewer folds"):
        user_folds(events, 3)


def test_tuning_folds_validate_every_training_user_once_and_no_held_out_user(events) -> None:
    from recsys.evaluation.split import validation_folds

    (outer, _) = user_folds(events, 2, seed=0)
    inner = validation_folds(outer, 3, seed=1)
    assert len(inner) == 3
    validated = [u for fold in inner for u in fold.held_out]
    training_events = [e for e in outer.training if e.user_id not in outer.held_out]
    assert sorted(validated) == eligible_users(training_events)  # each once
    assert set(validated).isdisjoint(outer.held_out)
    for fold in inner:
        assert {e.user_id for e in fold.training}.isdisjoint(outer.held_out)
