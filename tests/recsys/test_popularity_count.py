"""Popularity-Count ranks polls by unique users, the same list for everyone."""

from __future__ import annotations

import pytest

from recsys.events import Impression, Interaction
from recsys.recipes.base import Recipe, TrainingData
from recsys.recipes.popularity_count import (
    InvalidRecipeParameter,
    ModelNotFitted,
    PopularityCount,
)


def hunch(user: str, poll: str, t: int = 1000, kind: str = "HUNCH",
          value: float | None = None) -> Interaction:
    return Interaction(user, poll, kind, t, event_value=value)


def data(*events: Interaction, items: dict | None = None) -> TrainingData:
    return TrainingData(interactions=list(events), items=items or {})


def ids(items) -> list[str]:
    return [i.item_id for i in items]


def test_ranks_by_unique_users_not_by_event_count():
    # p1: one very active user (5 events); p2: three different users once each.
    events = [hunch("u1", "p1", t) for t in range(5)]
    events += [hunch(u, "p2") for u in ("u1", "u2", "u3")]
    events += [hunch(u, "p3") for u in ("u2", "u3")]
    model = PopularityCount().fit(data(*events))
    assert ids(model.recommend("anyone")) == ["p2", "p3", "p1"]
    assert model.unique_users("p1") == 1


def test_same_list_for_every_user_and_scores_are_shares_summing_to_one():
    events = [hunch(u, p) for u, p in [("a", "p1"), ("b", "p1"), ("c", "p2"), ("a", "p3")]]
    model = PopularityCount().fit(data(*events))
    assert model.recommend("a") == model.recommend("zzz") == model.recommend(None)
    recs = model.recommend(None)
    assert recs[0].score == pytest.approx(0.5)
    assert sum(r.score for r in recs) == pytest.approx(1.0)


def test_event_type_and_threshold_limit_what_counts():
    events = [hunch(u, "voted") for u in "abc"] + [
        hunch(u, "commented", kind="comment", value=v) for u, v in zip("abcd", [1, 5, 5, 9])
    ]
    votes_only = PopularityCount(event_type="HUNCH").fit(data(*events))
    assert ids(votes_only.recommend(None)) == ["voted"]
    strong_comments = PopularityCount(event_type="COMMENT", event_value_threshold=5)
    strong_comments.fit(data(*events))
    assert ids(strong_comments.recommend(None)) == ["commented"]
    assert strong_comments.unique_users("commented") == 3


def test_observe_updates_counts_at_once_and_ignores_repeat_users():
    model = PopularityCount().fit(data(hunch("a", "old"), hunch("b", "old")))
    model.observe([hunch("a", "new", 2000)] * 3)  # one user three times = one user
    assert ids(model.recommend(None)) == ["old", "new"]
    model.observe([hunch("c", "new"), hunch("d", "new"), hunch("a", "old"),
                   Impression("e", ("old",), 3000)])
    assert ids(model.recommend(None)) == ["new", "old"]
    assert model.unique_users("new") == 3 and model.unique_users("old") == 2


def test_exclude_allow_and_n():
    events = [hunch(u, p) for p, users in {"p1": "abcd", "p2": "abc", "p3": "ab", "p4": "a"}.items()
              for u in users]
    model = PopularityCount().fit(data(*events))
    assert ids(model.recommend(None, 2)) == ["p1", "p2"]
    assert ids(model.recommend(None, 2, exclude={"p1", "unknown"})) == ["p2", "p3"]
    assert ids(model.recommend(None, 5, allow=lambda p: p != "p3")) == ["p1", "p2", "p4"]
    assert model.recommend(None, 0) == []


def test_polls_nobody_touched_are_not_recommended_until_someone_does():
    model = PopularityCount().fit(data(hunch("a", "p1"), items={"p1": {}, "quiet": {}}))
    model.add_items({"brand-new": {"CATEGORY": "x"}})
    assert ids(model.recommend(None)) == ["p1"]
    model.observe([hunch("a", "brand-new"), hunch("b", "brand-new")])
    assert ids(model.recommend(None)) == ["brand-new", "p1"]


def test_save_load_round_trip_keeps_ranking_and_unique_user_memory(tmp_path):
    model = PopularityCount(event_type="HUNCH").fit(data(hunch("a", "p1"), hunch("b", "p2")))
    model.observe([hunch("c", "p2")])
    model.save(tmp_path / "m")
    loaded = PopularityCount.load(tmp_path / "m")
    assert loaded.recommend(None) == model.recommend(None)
    assert loaded.event_type == "HUNCH"
    loaded.observe([hunch("c", "p2"), hunch("a", "p1")])  # all already counted
    assert loaded.recommend(None) == model.recommend(None)
    assert not list(tmp_path.glob("m/*.pkl"))


def test_follows_the_recipe_protocol_and_reports_misuse():
    assert isinstance(PopularityCount(), Recipe)
    with pytest.raises(ModelNotFitted, match="fit"):
        PopularityCount().recommend("u")
    with pytest.raises(InvalidRecipeParameter, match="number"):
        PopularityCount(event_value_threshold="lots")


def test_deep_filtering_still_returns_the_next_best_in_order():
    # 230 polls with distinct popularity; allow rejects the 200 most popular.
    events = [hunch(f"u{k}", f"p{p:03d}") for p in range(230) for k in range(230 - p)]
    model = PopularityCount().fit(data(*events))
    allowed = model.recommend(None, 25, allow=lambda p: int(p[1:]) >= 200,
                              exclude={"p200"})
    assert ids(allowed) == [f"p{p:03d}" for p in range(201, 226)]
    ties = PopularityCount().fit(data(*(hunch("u", f"t{k}") for k in range(50))))
    assert ids(ties.recommend(None, 3)) == ["t0", "t1", "t2"]  # first seen wins a tie


@pytest.mark.parametrize("seed", range(20))
def test_select_top_is_the_best_eligible_polls_not_excluded_ties_to_the_lower_index(seed):
    """Against a plain sort, on scores with ties, ineligible polls, exclusions that are
    unknown, ineligible or past the scores, and more ids than scores."""
    import numpy as np

    from recsys.recipes.base import ScoredItem
    from recsys.recipes.popularity_count import select_top

    rng = np.random.default_rng(seed)
    polls = int(rng.integers(0, 60))
    ids = [f"p{i}" for i in range(polls + int(rng.integers(0, 3)))]
    index = {poll: i for i, poll in enumerate(ids)}
    scores = rng.integers(0, 6, polls).astype(float)  # many ties
    scores[rng.random(polls) < 0.3] = -np.inf
    exclude = {poll for poll in ids if rng.random() < 0.3} | {"unknown"}
    n = int(rng.integers(1, 12))
    expected = sorted((i for i in range(min(polls, len(ids)))
                       if scores[i] > -np.inf and ids[i] not in exclude),
                      key=lambda i: (-scores[i], i))[:n]
    assert select_top(scores, ids, index, n, exclude) == [
        ScoredItem(ids[i], float(scores[i])) for i in expected]
