"""Ground truth decides: trend tuning recovers the planted burst timescale, and never
recommends a frequency whose trending slot would mostly be empty."""

from __future__ import annotations

import json

import pytest

from recsys.analysis.trend_tuning import (
    MAX_EMPTY_SHARE,
    TrendTuningError,
    latency_matched_frequency,
    tune_trending,
)
from recsys.datasets import load_directory
from recsys.demo_data import HOUR, generate_demo_data
from recsys.events import Interaction

DAY = 86_400
# Bursts carry 40 % of interactions so that they, not the recency wave of new polls,
# decide which frequency fits; 8 days leave 6 days of cut-offs after the warm-up.
USERS, POLLS, DAYS, BURST_SHARE = 800, 800, 8, 0.4


@pytest.mark.parametrize("timescale", [HOUR, DAY], ids=["1-hour-bursts", "1-day-bursts"])
def test_picks_the_frequency_that_matches_the_planted_bursts(tmp_path, timescale):
    generate_demo_data(tmp_path, users=USERS, polls=POLLS, days=DAYS, seed=2,
                       burst_timescale=timescale, burst_share=BURST_SHARE)
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert truth["parameters"]["burst_share"] == BURST_SHARE
    result = tune_trending(load_directory(tmp_path).interactions, warmup=DAY)
    assert result.recommended == latency_matched_frequency(timescale)
    table = {row["frequency"]: row for row in result.to_json()["table"]}
    best = table[result.recommended]
    assert all(best["ndcg_at_10"] >= row["ndcg_at_10"] for row in table.values())
    assert 0 < best["precision_at_10"] <= 1


def test_the_two_timescales_ask_for_different_frequencies():
    assert latency_matched_frequency(HOUR) == "30 minutes"
    assert latency_matched_frequency(DAY) == "3 hours"
    assert latency_matched_frequency(3 * DAY) == "1 day"


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


def test_too_little_data_says_what_is_missing():
    with pytest.raises(TrendTuningError, match="at least 100"):
        tune_trending([Interaction("u", "p", "HUNCH", 1_704_067_200)])
