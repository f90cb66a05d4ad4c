"""Popularity-Count and Trending-Now keep their ranking between requests (a feed page
asks each once, and their scores move far less often than pages are asked): the lists
read off it are exactly what ranking afresh gives, whatever streams in between, and it
is ranked again only when the scores moved."""

from __future__ import annotations

import numpy as np
import pytest

import recsys.recipes.popularity_count as popularity_module
from recsys.events import Impression, Interaction
from recsys.recipes.base import PollMask, TrainingData
from recsys.recipes.popularity_count import PopularityCount, select_top
from recsys.recipes.trending_now import TrendingNow

HOUR = 3600
POLLS = [f"p{i}" for i in range(300)]


@pytest.fixture()
def rankings(monkeypatch) -> list[int]:
    """How many times a ranking was made."""
    made: list[int] = []
    original = popularity_module.ranking_of

    def counting(scores):
        made.append(len(scores))
        return original(scores)

    monkeypatch.setattr(popularity_module, "ranking_of", counting)
    return made


def _events(rng: np.random.Generator, count: int, start: int, span: int) -> list[Interaction]:
    # Few users and skewed polls: many ties in unique-user counts and in growth.
    polls = rng.zipf(1.5, count) % len(POLLS)
    users = rng.integers(0, 40, count)
    stamps = np.sort(rng.integers(start, start + span, count))
    return [Interaction(f"u{u}", POLLS[p], "HUNCH", int(t))
            for u, p, t in zip(users, polls, stamps)]


def _fresh(model, n, exclude, allow):
    """The same request ranked afresh, as select_top does without a kept ranking."""
    if isinstance(model, PopularityCount):
        keys = model._rank_key[: len(model._items)]
        share = 1.0 / max(model._total, 1)
        return select_top(keys, model._items.ids, model._items.index, n, exclude, allow,
                          rows=model._catalog_rows, score_of=lambda c: c * share)
    now = model._newest_ts
    scores = model._growth(now)
    if scores is None:
        totals = model._totals[: len(model._items)]
        scores = np.where(totals > 0, totals / max(totals.sum(), 1), -np.inf)
    return select_top(scores, model._items.ids, model._items.index, n, exclude, allow,
                      rows=model._catalog_rows)


@pytest.mark.parametrize("recipe", ["popularity", "trending", "trending-fallback"])
@pytest.mark.parametrize("seed", range(4))
def test_lists_read_off_the_kept_ranking_are_the_fresh_ranking(recipe, seed) -> None:
    rng = np.random.default_rng(seed)
    start = 1_700_000_000 - 1_700_000_000 % (3 * HOUR)
    events = _events(rng, 3000, start, 9 * HOUR)
    if recipe == "trending-fallback":  # nothing in the last two complete intervals
        events = _events(rng, 3000, start, HOUR) + [
            Interaction("u0", "p0", "HUNCH", start + 12 * HOUR)]
    model = (PopularityCount() if recipe == "popularity" else TrendingNow()).fit(
        TrainingData(events, {p: {} for p in POLLS}))
    if recipe == "trending-fallback":
        assert model.rank(5).reason == "popular-fallback"
    catalog = list(reversed(POLLS)) + ["catalog-only"]
    index = {p: i for i, p in enumerate(catalog)}
    masks = {"none": None,
             "mostly kept": PollMask(rng.random(len(catalog)) > 0.1, catalog, index),
             "selective": PollMask(rng.random(len(catalog)) < 0.03, catalog, index)}
    for step in range(12):
        for name, mask in masks.items():
            for n in (1, 10, 40):
                exclude = set(rng.choice(POLLS, int(rng.integers(0, 80)), replace=False))
                served = model.recommend(None, n, exclude=exclude, allow=mask)
                assert served == _fresh(model, n, exclude, mask), (step, name, n)
                predicate = None if mask is None else mask.__call__
                assert model.recommend(None, n, exclude=exclude, allow=predicate) == served
        # Events stream in (some in the interval in progress, some in the last complete
        # one), and a new poll arrives now and then.
        late = 12 if recipe == "trending-fallback" else 9 + step // 4
        model.observe(_events(rng, int(rng.integers(1, 30)), start + late * HOUR, HOUR))
        model.observe([Impression("u1", ("p1", "p2"), start + 9 * HOUR)])
        if step % 5 == 4:
            model.add_items({f"new-{step}": {}})


@pytest.mark.parametrize("recipe", [PopularityCount, TrendingNow])
def test_the_ranking_is_made_once_while_the_scores_stand_still(recipe, rankings) -> None:
    rng = np.random.default_rng(0)
    start = 1_700_000_000 - 1_700_000_000 % (3 * HOUR)
    model = recipe().fit(TrainingData(_events(rng, 2000, start, 9 * HOUR),
                                      {p: {} for p in POLLS}))
    for _ in range(20):  # twenty feed pages
        assert model.recommend(None, 22, exclude={"p0", "p1"})
    assert len(rankings) == 1
    # Impressions move neither list; a counted vote moves popularity's counts, and a vote
    # in the interval in progress moves no growth score Trending-Now ranks by.
    model.observe([Impression("u1", ("p3",), start + 9 * HOUR - 10)])
    model.recommend(None, 22)
    assert len(rankings) == 1
    model.observe([Interaction("new-user", "p5", "HUNCH", start + 9 * HOUR - 10)])
    model.recommend(None, 22)
    assert len(rankings) == (2 if recipe is PopularityCount else 1)
