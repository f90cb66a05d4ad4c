"""One stray timestamp in imported history must not move the recipes' clock.

Issue 13, item 2: a single event from the year 2100 froze Trending-Now (its clock jumped
there, every real interval looked empty) and, through training's ``trained_until``, made
serving ignore every later real vote for Popularity-Count too. Each test trains on
demo data from CSV files (as ``hunch train`` does) once as generated and once with an
event at 2100 and one at 0 added, and asks for the same answer.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from recsys.demo_data import generate_demo_data
from recsys.events import EventStore, Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.clock import CLOCK_MAX_LEAD_SECONDS, CLOCK_QUORUM, EventClock, robust_newest
from recsys.recipes.trending_now import TrendingNow
from recsys.serving import RecipeService
from recsys.training import train

YEAR_2100 = 4_102_444_800


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    generate_demo_data(out, users=150, polls=300, days=4, seed=11)
    return out


def with_outliers(demo: Path, target: Path) -> Path:
    """A copy of the demo data with one vote at 2100 and one at epoch 0 appended."""
    shutil.copytree(demo, target)
    path = target / "interactions.csv"
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header, first = rows[0], rows[1]
    at = header.index("TIMESTAMP")
    for stamp, user in ((YEAR_2100, "outlier-future"), (0, "outlier-epoch")):
        row = list(first)
        row[header.index("USER_ID")], row[at] = user, str(stamp)
        rows.append(row)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return target


def newest_timestamp(data: Path) -> int:
    with (data / "interactions.csv").open(newline="") as fh:
        return max(int(r["TIMESTAMP"]) for r in csv.DictReader(fh) if int(r["TIMESTAMP"]) < YEAR_2100)


def served(data: Path, root: Path, recipe: str, store: EventStore | None = None):
    train(recipe, data, root / "artifacts", with_metrics=False)
    return RecipeService(root / "artifacts", store)


def test_trending_list_ignores_one_event_at_2100_and_one_at_0(demo, tmp_path):
    clean = served(demo, tmp_path / "clean", "trending-now").recommend("trending-now", None, 20)
    polluted_dir = with_outliers(demo, tmp_path / "polluted-data")
    polluted = served(polluted_dir, tmp_path / "polluted", "trending-now").recommend(
        "trending-now", None, 20)
    assert clean.reason == "trending" and clean.items  # the check has something to compare
    assert (polluted.reason, polluted.items) == (clean.reason, clean.items)


def test_trending_keeps_counting_real_votes_streamed_after_an_outlier(demo, tmp_path):
    """Later real votes count: a burst after training trends with the outlier stored."""
    polluted_dir = with_outliers(demo, tmp_path / "polluted-data")
    store = EventStore(tmp_path / "events.sqlite3")
    service = served(polluted_dir, tmp_path / "polluted", "trending-now", store)
    service.recommend("trending-now", None, 5)
    model = service.model("trending-now")
    width = model.interval_seconds
    start = (newest_timestamp(demo) // width + 1) * width  # the next interval
    # A fresh poll: 40 votes in the interval after the data, then a few in the next one,
    # so the burst's interval is the latest complete one.
    burst = [Interaction(f"fan{k}", "brand-new-poll", "HUNCH", start + k) for k in range(40)]
    store.append_many(burst + [
        Interaction(f"late{k}", "brand-new-poll", "HUNCH", start + width + k)
        for k in range(CLOCK_QUORUM)])
    ranked = service.recommend("trending-now", None, 5)
    assert ranked.reason == "trending"
    assert ranked.items[0].item_id == "brand-new-poll"
    store.close()


def test_popularity_counts_votes_stored_after_training_despite_an_outlier(demo, tmp_path):
    polluted_dir = with_outliers(demo, tmp_path / "polluted-data")
    store = EventStore(tmp_path / "events.sqlite3")
    service = served(polluted_dir, tmp_path / "polluted", "popularity-count", store)
    top = service.recommend("popularity-count", None, 1).items[0]
    voters = service.model("popularity-count").unique_users(top.item_id) + 5  # beats the top
    after = newest_timestamp(demo) + 60
    store.append_many(Interaction(f"new-voter-{k}", "newly-popular", "HUNCH", after + k)
                      for k in range(voters))
    assert service.recommend("popularity-count", None, 1).items[0].item_id == "newly-popular"
    store.close()


def test_training_marks_trained_until_at_the_real_newest_event(demo, tmp_path):
    polluted_dir = with_outliers(demo, tmp_path / "polluted-data")
    manifest = train("popularity-count", polluted_dir, tmp_path / "artifacts",
                     with_metrics=False)
    assert manifest["trained_until"] == newest_timestamp(demo)


def test_streamed_outlier_does_not_move_the_clock_until_others_join_it():
    model = TrendingNow().fit(TrainingData(
        [Interaction(f"u{k}", "p", "HUNCH", 1_700_000_000 + k) for k in range(50)]))
    before = model._newest_ts
    model.observe([Interaction("liar", "p", "HUNCH", YEAR_2100)])
    assert model._newest_ts == before
    model.observe([Interaction("u-late", "p", "HUNCH", before + 30)])
    assert model._newest_ts == before + 30  # a normal stream moves it as before


@pytest.mark.parametrize("outliers", [[], [YEAR_2100], [YEAR_2100] * (CLOCK_QUORUM - 1),
                                      [0, -5, YEAR_2100]])
def test_robust_newest_is_the_newest_trusted_time(outliers):
    stream = [1_700_000_000 + 7 * k for k in range(200)]
    assert robust_newest(stream + outliers) == stream[-1]
    clock = EventClock()
    clock.observe_many(stream + outliers)
    assert clock.now == stream[-1]


def test_a_leap_ahead_is_believed_once_a_quorum_reaches_it():
    clock = EventClock([1_700_000_000 + k for k in range(10)])
    later = 1_700_000_000 + 2 * CLOCK_MAX_LEAD_SECONDS  # e.g. traffic after a quiet spell
    moved = [clock.observe(later + k) for k in range(CLOCK_QUORUM)]
    assert moved == [False] * (CLOCK_QUORUM - 1) + [True]
    assert clock.now == later + CLOCK_QUORUM - 1


def test_trending_saved_and_loaded_keeps_its_clock(tmp_path):
    events = [Interaction(f"u{k}", "p", "HUNCH", 1_700_000_000 + k) for k in range(20)]
    model = TrendingNow().fit(TrainingData(events + [Interaction("x", "p", "HUNCH", YEAR_2100)]))
    model.save(tmp_path)
    loaded = TrendingNow.load(tmp_path)
    loaded.observe([Interaction("y", "p", "HUNCH", YEAR_2100 + 1)])  # a second liar
    assert loaded._newest_ts == 1_700_000_019


def test_streamed_clock_matches_the_definition_on_shuffled_streams():
    """Newest time within the lead of the CLOCK_QUORUM-th newest, whatever the order,
    once the first few events are honest (before that there is nothing to compare)."""
    import numpy as np

    rng = np.random.default_rng(7)
    for _ in range(200):
        honest = (1_700_000_000 + np.cumsum(rng.integers(0, 4 * 3600, 60))).tolist()
        outliers = rng.choice([0, YEAR_2100, honest[-1] + 3 * CLOCK_MAX_LEAD_SECONDS],
                              rng.integers(0, CLOCK_QUORUM)).tolist()
        rest = honest[CLOCK_QUORUM:] + outliers
        rng.shuffle(rest)
        stream = honest[:CLOCK_QUORUM] + rest
        q = sorted(stream)[-CLOCK_QUORUM]
        expected = max(t for t in stream if t <= q + CLOCK_MAX_LEAD_SECONDS)
        clock = EventClock()
        clock.observe_many(stream)
        assert clock.now == expected == robust_newest(stream)


def test_user_personalization_measures_poll_ages_from_the_real_newest_event(demo, tmp_path):
    """Its poll ages (recency steps, exploration of new polls) run from this clock: one
    event at 2100 made every poll look 75 years old, also after a save and load."""
    from recsys.datasets import load_directory
    from recsys.recipes.user_personalization import UserPersonalization

    data = load_directory(with_outliers(demo, tmp_path / "polluted")).training_data()
    model = UserPersonalization(exploration_weight=0.0).fit(data)
    assert model.newest_timestamp_ == newest_timestamp(demo)
    poll = data.interactions[0].item_id
    model.observe([Interaction("liar", poll, "HUNCH", YEAR_2100)])
    assert model.newest_timestamp_ == newest_timestamp(demo)
    model.save(tmp_path / "up")
    loaded = UserPersonalization.load(tmp_path / "up")
    loaded.observe([Interaction("liar2", poll, "HUNCH", YEAR_2100)])
    assert loaded.newest_timestamp_ == newest_timestamp(demo)
    loaded.observe([Interaction("voter", poll, "HUNCH", newest_timestamp(demo) + 60)])
    assert loaded.newest_timestamp_ == newest_timestamp(demo) + 60
