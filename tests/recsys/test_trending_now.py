"""Trending-Now ranks polls by the growth of interactions between the last two intervals."""

from __future__ import annotations

import importlib.util
import json

import pytest

from recsys.events import Impression, Interaction
from recsys.recipes.base import Recipe, TrainingData
from recsys.recipes.trending_now import (
    TREND_DISCOVERY_FREQUENCIES,
    InvalidTrendDiscoveryFrequency,
    TrendingNow,
    TrendingWindowExpired,
    burst_detection,
)

HOUR = 3600
T0 = 1_700_000_000 - 1_700_000_000 % (3 * HOUR)  # aligned to a 3-hour interval


def events_in(interval: int, poll: str, count: int, width: int = 3 * HOUR,
              kind: str = "HUNCH") -> list[Interaction]:
    """``count`` interactions with ``poll`` spread over interval number ``interval``."""
    start = T0 + interval * width
    return [Interaction(f"u{poll}{interval}-{k}", poll, kind, start + k * width // (count + 1))
            for k in range(count)]


def ids(items) -> list[str]:
    return [i.item_id for i in items]


def fitted(*groups: list[Interaction], items: dict | None = None, **params) -> TrendingNow:
    return TrendingNow(**params).fit(
        TrainingData(interactions=sorted((e for g in groups for e in g),
                                         key=lambda e: e.timestamp), items=items or {}))


def test_growth_beats_size_and_tiny_counts_do_not_win():
    model = fitted(
        events_in(0, "steady-big", 100), events_in(1, "steady-big", 100),
        events_in(0, "tiny", 1), events_in(1, "tiny", 3),
        events_in(0, "real", 20), events_in(1, "real", 60),
        events_in(0, "falling", 30), events_in(1, "falling", 5),
    )
    now = T0 + 2 * 3 * HOUR  # interval 1 just completed
    ranked = model.rank(10, now=now)
    assert ranked.reason == "trending"
    assert ids(ranked.items) == ["real", "tiny"]  # steady and falling polls do not trend
    assert ranked.items[0].score > ranked.items[1].score > 0


def test_only_complete_intervals_count():
    model = fitted(events_in(0, "a", 5), events_in(1, "a", 5), events_in(1, "b", 2),
                   events_in(2, "c", 50))
    # now inside interval 2: "c" is in the interval in progress, so not yet trending.
    inside = model.recommend(None, now=T0 + 2 * 3 * HOUR + 60)
    assert ids(inside) == ["b"]
    # once interval 2 completes, "c" leads.
    assert ids(model.recommend(None, now=T0 + 3 * 3 * HOUR))[0] == "c"


def test_streamed_events_and_new_polls_count_without_retraining():
    model = fitted(events_in(0, "old", 10), events_in(1, "old", 10))
    model.add_items({"fresh": {"CATEGORY": "news"}})
    model.observe(events_in(2, "fresh", 12) + events_in(2, "old", 10)
                  + [Impression("x", ("old",) * 5, T0 + 2 * 3 * HOUR + 5)])
    assert ids(model.recommend("someone", now=T0 + 3 * 3 * HOUR)) == ["fresh"]


def test_frequency_sets_the_interval_length():
    burst = events_in(0, "p", 2, width=HOUR) + events_in(1, "p", 12, width=HOUR)
    hourly = fitted(burst, trend_discovery_frequency="1 hour")
    assert ids(hourly.recommend(None, now=T0 + 2 * HOUR)) == ["p"]
    # a day-long interval holds all of it, and the day before was empty: still growth,
    # but asked mid-day, nothing is complete yet and the popular fallback answers.
    daily = fitted(burst, trend_discovery_frequency="1 day")
    ranked = daily.rank(5, now=T0 + 2 * HOUR)
    assert ranked.reason == "popular-fallback" and ids(ranked.items) == ["p"]


def test_quiet_last_two_intervals_fall_back_to_popular_polls():
    model = fitted(events_in(0, "loved", 30), events_in(0, "liked", 10), events_in(1, "liked", 1))
    ranked = model.rank(5, now=T0 + 4 * 3 * HOUR)  # intervals 2 and 3 were silent
    assert ranked.reason == "popular-fallback"
    assert ids(ranked.items) == ["loved", "liked"]
    assert sum(i.score for i in ranked.items) == pytest.approx(1.0)


def test_metadata_does_not_change_scores():
    groups = (events_in(0, "a", 3), events_in(1, "a", 9), events_in(1, "b", 4))
    plain = fitted(*groups, items={"a": {"CATEGORY": "x"}, "b": {"CATEGORY": "y"}})
    other = fitted(*groups, items={"a": {"CATEGORY": "NSFW", "AUTHOR_ID": "z"}, "b": {}})
    other.add_items({"a": {"CATEGORY": "changed again"}})
    now = T0 + 2 * 3 * HOUR
    assert plain.recommend(None, now=now) == other.recommend(None, now=now)


def test_exclude_and_allow_apply():
    model = fitted(*(events_in(1, p, c) for p, c in [("a", 9), ("b", 6), ("c", 3)]))
    now = T0 + 2 * 3 * HOUR
    assert ids(model.recommend(None, now=now)) == ["a", "b", "c"]
    assert ids(model.recommend(None, now=now, exclude={"a"})) == ["b", "c"]
    assert ids(model.recommend(None, now=now, allow=lambda p: p != "b")) == ["a", "c"]


def test_memory_is_bounded_to_the_last_intervals():
    model = fitted(events_in(0, "p", 3))
    for interval in range(1, 40):
        model.observe(events_in(interval, "p", 3))
    assert len(model._buckets) <= 4
    with pytest.raises(TrendingWindowExpired, match="observe"):
        model.recommend(None, now=T0 + 3 * HOUR)


def test_invalid_frequency_names_the_choices():
    with pytest.raises(InvalidTrendDiscoveryFrequency) as err:
        TrendingNow(trend_discovery_frequency="2 hours")
    for choice in TREND_DISCOVERY_FREQUENCIES:
        assert choice in str(err.value)


def test_save_load_round_trip(tmp_path):
    model = fitted(events_in(0, "a", 2), events_in(1, "a", 8), events_in(1, "b", 3),
                   trend_discovery_frequency="3 hours")
    model.save(tmp_path)
    loaded = TrendingNow.load(tmp_path)
    now = T0 + 2 * 3 * HOUR
    assert loaded.recommend(None, now=now) == model.recommend(None, now=now)
    loaded.observe(events_in(2, "b", 30))
    assert ids(loaded.recommend(None, now=now + 3 * HOUR))[0] == "b"
    assert isinstance(loaded, Recipe)


@pytest.mark.skipif(importlib.util.find_spec("recsys.demo_data") is None,
                    reason="recsys.demo_data not written yet")
def test_planted_bursts_reach_the_top_ten_within_one_interval(tmp_path):
    from recsys.datasets import load_directory
    from recsys.demo_data import generate_demo_data
    generate_demo_data(tmp_path, users=300, polls=400, days=4, seed=7)
    bursts = json.loads((tmp_path / "ground_truth.json").read_text())["bursts"]
    # Replayed as a server receives them; asked at the first boundary after each onset.
    found, total = burst_detection(load_directory(tmp_path).interactions, bursts,
                                   TrendingNow(), top=10, within_intervals=1)
    assert total == len(bursts) > 0
    assert found / total >= 0.8


def test_burst_detection_misses_a_burst_that_never_grows():
    flat = events_in(0, "flat", 5) + events_in(1, "flat", 5) + events_in(1, "up", 9)
    bursts = [{"item_id": "flat", "onset": T0 + 3 * HOUR}, {"item_id": "up", "onset": T0 + 3 * HOUR}]
    assert burst_detection(flat, bursts, TrendingNow()) == (1, 2)


def test_late_events_for_a_complete_interval_change_the_next_answer():
    model = fitted(events_in(0, "a", 2), events_in(1, "a", 8), events_in(2, "c", 1))
    now = T0 + 2 * 3 * HOUR + 60
    assert ids(model.recommend(None, now=now)) == ["a"]
    model.observe(events_in(2, "c", 5))  # the interval in progress: no change yet
    assert ids(model.recommend(None, now=now)) == ["a"]
    model.observe(events_in(1, "late", 30))  # arrived late, for the complete interval
    assert ids(model.recommend(None, now=now)) == ["late", "a"]


def _one_account(poll: str, interval: int, count: int, user: str = "spammer") -> list[Interaction]:
    start = T0 + interval * 3 * HOUR
    return [Interaction(user, poll, "HUNCH", start + 1 + k) for k in range(count)]


def test_one_account_voting_again_and_again_does_not_make_a_poll_trend(tmp_path):
    """A client's probe: 150 votes by one user on one poll (under the mutation rate
    limit) made it everyone's top trending poll. A user counts once per poll per
    interval, in fit, in streamed events, and across a save and a load."""
    honest = events_in(0, "real", 20) + events_in(1, "real", 60)
    now = T0 + 2 * 3 * HOUR  # interval 1 just completed
    # Trained on the spam: one user's 150 votes are one.
    model = fitted(honest, _one_account("spam", 1, 150))
    one_vote = {"real": model.rank(10, now=now).items[0].score, "spam": 1 / 5 ** 0.5}

    def scores(m):
        return {i.item_id: pytest.approx(i.score) for i in m.rank(10, now=now).items}

    assert scores(model) == one_vote  # (1 - 0) / sqrt(0 + prior): one vote
    assert model.interval_counts(now)[0][model._items.index["spam"]] == 1
    # Streamed, after a save and a load: still one, and the pairs counted in fit stay.
    model.save(tmp_path / "m")
    loaded = TrendingNow.load(tmp_path / "m")
    loaded.observe(_one_account("spam", 1, 150))
    assert scores(loaded) == one_vote
    # 150 different users voting on it is a trend, as before.
    crowd = [Interaction(f"fan{k}", "spam", "HUNCH", T0 + 2 * 3 * HOUR - 150 + k)
             for k in range(150)]
    loaded.observe(crowd)
    assert ids(loaded.rank(10, now=now).items)[0] == "spam"
    # The same 150 votes from 150 users, trained on: a trend (the world does catch one).
    counts = fitted(honest, *[_one_account("spam", 1, 1, user=f"v{k}") for k in range(150)])
    assert ids(counts.rank(10, now=now).items)[0] == "spam"
