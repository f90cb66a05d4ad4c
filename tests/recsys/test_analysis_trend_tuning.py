"""Ground truth decides: trend tuning recovers the planted burst timescale from the
backtest's numbers alone (it never reads ground_truth.json), scores lists against surges
rather than popularity, and never recommends a frequency whose slot would mostly be empty."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.analysis.trend_tuning import (
    MAX_EMPTY_SHARE,
    MIN_USERS,
    TrendTuningError,
    backtest,
    previous_events,
    surge,
    tune_trending,
)
from recsys.datasets import load_directory
from recsys.demo_data import HOUR, generate_demo_data
from recsys.events import Interaction

DAY = 86_400
# Small enough for seconds per seed; the burst share is the generator's default (3 %), so
# bursts are a few hundred votes among ~64k and the recency wave of new polls competes.
USERS, POLLS, DAYS = 800, 800, 8
SEEDS = (0, 1, 2)


@pytest.mark.parametrize(("timescale", "expected"), [(HOUR, "1 hour"), (3 * HOUR, "3 hours")],
                         ids=["1-hour-bursts", "3-hour-bursts"])
def test_picks_the_frequency_equal_to_the_planted_burst_timescale(tmp_path, timescale, expected):
    for seed in SEEDS:
        out = tmp_path / str(seed)
        generate_demo_data(out, users=USERS, polls=POLLS, days=DAYS, seed=seed,
                           burst_timescale=timescale)
        truth = json.loads((out / "ground_truth.json").read_text())
        assert {b["timescale"] for b in truth["bursts"]} == {timescale}
        result = tune_trending(load_directory(out).interactions, warmup=DAY)
        table = {row["frequency"]: row for row in result.to_json()["table"]}
        assert result.recommended == expected, (seed, table)
        # Decided by the numbers: the planted timescale has the best NDCG@10 of all four,
        # every one scored on the same cut-offs against the same target.
        best = table[expected]
        assert all(best["ndcg_at_10"] > row["ndcg_at_10"]
                   for name, row in table.items() if name != expected)
        assert len({row["cutoffs"] for row in table.values()}) == 1
        assert 0 < best["precision_at_10"] <= 1


def test_a_poll_that_is_merely_popular_does_not_surge():
    # "steady" draws 10 interactions an hour for days; "jump" draws 1 an hour, then 10.
    start, hour = 1_704_067_200, 3_600
    events = []
    for h in range(72):
        events += [(start + h * hour + k, "steady") for k in range(10)]
        events += [(start + h * hour + 30 + k, "jump") for k in range(10 if h >= 71 else 1)]
    events.sort()
    ts = np.array([t for t, _ in events])
    polls = np.array([0 if p == "steady" else 1 for _, p in events])
    first_seen = np.array([ts[polls == 0].min(), ts[polls == 1].min()])
    gains = surge(ts, polls, first_seen, start + 71 * hour, hour)
    assert gains[0] == 0 and gains[1] > 5


def test_a_window_counts_each_user_once_per_poll_it_holds():
    """Against a count by hand of distinct (user, poll) pairs in each window: a user who
    comes back every 2,500 s (or 1,000 s) counts once in every window holding a vote of
    theirs, never zero (a "once per horizon since the last counted vote" rule missed
    some), and one account's burst counts once."""
    rng = np.random.default_rng(0)
    events = [(t, "steady", "p0") for t in range(0, 40_000, 2_500)]
    events += [(t, "often", "p1") for t in range(500, 40_000, 1_000)]
    events += [(12_000 + k, "burst", "p2") for k in range(150)]
    events += [(int(t), f"u{rng.integers(20)}", f"p{rng.integers(3)}")
               for t in rng.uniform(0, 40_000, 300)]
    events.sort()
    ts = np.array([t for t, _, _ in events])
    polls = np.array([int(p[1:]) for _, _, p in events])
    pair_index: dict = {}
    pairs = np.array([pair_index.setdefault((u, p), len(pair_index)) for _, u, p in events])
    previous = previous_events(ts, pairs)
    first_seen = np.full(3, -1)  # every poll exists; a zero baseline keeps gains = counts
    for cutoff in range(1_800, 36_000, 1_800):
        gains = surge(ts, polls, first_seen, cutoff, 3_600, baseline=0, previous=previous)
        by_hand = [len({u for t, u, p in events if cutoff <= t < cutoff + 3_600
                        and p == f"p{k}"}) for k in range(3)]
        assert gains.tolist() == by_hand, (cutoff, gains, by_hand)


def test_one_accounts_votes_are_not_a_surge():
    """Trending-Now counts a user once per poll per interval, so one account's 150 votes
    on "spam" cannot put it on the list; the target must not reward a list that shows
    it either. Ten people each voting once on "real" in the same hour are the surge."""
    start, hour = 1_704_067_200, 3_600
    events = []
    for h in range(4 * 24):  # background: every poll draws a vote an hour
        for p in ("spam", "real", "a", "b", "c"):
            events.append(Interaction(f"bg{h % 7}-{p}", p, "HUNCH", start + h * hour + 1))
    target = start + 3 * 24 * hour
    events += [Interaction("spammer", "spam", "HUNCH", target + 60 + k) for k in range(150)]
    events += [Interaction(f"fan{k}", "real", "HUNCH", target + 60 + 10 * k) for k in range(10)]
    events.sort(key=lambda e: e.timestamp)
    ts = np.array([e.timestamp for e in events])
    names = ["spam", "real", "a", "b", "c"]
    polls = np.array([names.index(e.item_id) for e in events])
    first_seen = np.array([ts[polls == k].min() for k in range(5)])
    raw = surge(ts, polls, first_seen, target, hour)
    assert raw[0] > raw[1]  # counted raw, the spam is the surge (the planted effect)
    pair_index: dict = {}
    pairs = np.array([pair_index.setdefault((e.user_id, e.item_id), len(pair_index))
                      for e in events])
    gains = surge(ts, polls, first_seen, target, hour, previous=previous_events(ts, pairs))
    assert gains[1] > 5 and gains[0] < 1
    # The backtest: the spammer's 149 repeats (within three minutes of the first vote)
    # change neither a model's lists nor the target, so not one score.
    once = [e for e in events if e.user_id != "spammer"] + [
        Interaction("spammer", "spam", "HUNCH", target + 60)]
    once.sort(key=lambda e: e.timestamp)
    frequencies = ["30 minutes", "1 hour", "3 hours"]
    with_repeats = backtest(events, frequencies, warmup=2 * 86_400, step=1_800)
    without = backtest(once, frequencies, warmup=2 * 86_400, step=1_800)
    assert [(s.ndcg_at_10, s.precision_at_10) for s in with_repeats] == \
        [(s.ndcg_at_10, s.precision_at_10) for s in without]


def test_frequencies_with_mostly_empty_intervals_are_not_recommended():
    # One vote burst every 4 hours: 30-minute and 1-hour lists are mostly the fallback.
    events = []
    start = 1_704_067_200
    for k in range(6 * 6):
        t = start + k * 4 * HOUR
        for j in range(8):
            events.append(Interaction(f"u{k}-{j}", f"p{k % 5 + j % 2}", "HUNCH", t + j))
    result = tune_trending(events, warmup=DAY)
    rows = {r["frequency"]: r for r in result.to_json()["table"]}
    assert rows["30 minutes"]["empty_interval_share"] > MAX_EMPTY_SHARE
    assert "30 minutes" not in result.eligible
    assert result.recommended in ("3 hours", "1 day")
    # One grid of cut-offs for all four frequencies (each once had its own interval).
    assert len({r["cutoffs"] for r in rows.values()}) == 1


def test_a_stray_timestamp_does_not_make_the_backtest_walk_decades(tmp_path):
    """One row dated 1970 and two dated 2100 made the backtest step through every empty
    30-minute window between them (killed after 90 s, memory growing). The backtest
    keeps the last weeks before the data's robust now: the same answer as without them."""
    import time

    out = tmp_path / "demo"
    generate_demo_data(out, users=USERS, polls=POLLS, days=DAYS, seed=0, burst_timescale=HOUR)
    events = load_directory(out).interactions
    clean = tune_trending(events, warmup=DAY)
    strays = [Interaction("u-stray", events[0].item_id, "HUNCH", 100),
              Interaction("u-stray", events[0].item_id, "HUNCH", 4_102_444_800),
              Interaction("u-stray2", events[0].item_id, "HUNCH", 4_102_444_800)]
    started = time.perf_counter()
    said: list[str] = []
    stray = tune_trending(events + strays, warmup=DAY, progress=said.append)
    assert time.perf_counter() - started < 60
    assert stray.recommended == clean.recommended
    assert stray.to_json()["table"] == clean.to_json()["table"]
    assert any("left out 3 interactions" in m for m in said), said


def test_too_little_data_says_what_is_missing():
    with pytest.raises(TrendTuningError, match="at least 100"):
        tune_trending([Interaction("u", "p", "HUNCH", 1_704_067_200)])


def test_a_handful_of_users_is_not_enough_to_tune_on():
    """Five accounts voting on 40 polls over five days made a recommendation before:
    their habits, not trends. Below MIN_USERS the backtest refuses, naming the count;
    the same volume from enough users runs."""
    start = 1_704_067_200

    def events(users: int) -> list[Interaction]:
        return [Interaction(f"u{k % users}", f"p{k % 40}", "HUNCH", start + k * 900)
                for k in range(5 * 96)]

    with pytest.raises(TrendTuningError, match=f"only 5 user.*at least {MIN_USERS}"):
        tune_trending(events(5), warmup=DAY)
    assert tune_trending(events(MIN_USERS), warmup=DAY).recommended
