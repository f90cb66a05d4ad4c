"""RecipeService: newest version served, hot-swapped safely, stored events folded in."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from recsys.artifacts import ArtifactNotFound, ArtifactStore, UnknownRecipe
from recsys.events import EventStore, Impression, Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.popularity_count import PopularityCount
from recsys.recipes.trending_now import TrendingNow
from recsys.serving import RecipeService

HOUR = 3600
T0 = 1_700_000_000 - 1_700_000_000 % (3 * HOUR)


class Clock:
    """A hand-moved clock, so hot-swap checks happen when the test says."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def votes(poll: str, users: str, t: int = T0) -> list[Interaction]:
    return [Interaction(u, poll, "HUNCH", t) for u in users]


def publish_popularity(store: ArtifactStore, events: list[Interaction]) -> str:
    model = PopularityCount().fit(TrainingData(events))
    newest = max(e.timestamp for e in events)
    return store.publish("popularity-count", model, model.params(), "fp",
                         extra={"trained_until": newest})


def ids(recs) -> list[str]:
    return [i.item_id for i in recs.items]


def test_serves_the_newest_version_and_swaps_after_the_check_interval(tmp_path):
    store = ArtifactStore(tmp_path)
    v1 = publish_popularity(store, votes("first", "abc"))
    clock = Clock()
    service = RecipeService(tmp_path, check_seconds=5, clock=clock)
    answer = service.recommend("popularity-count", "u1")
    assert (answer.version, ids(answer)) == (v1, ["first"])

    v2 = publish_popularity(store, votes("second", "abc"))
    clock.t = 1  # within the interval: keeps serving what is live without looking
    assert service.recommend("popularity-count", "u1").version == v1
    clock.t = 6
    answer = service.recommend("popularity-count", "u1")
    assert (answer.version, ids(answer)) == (v2, ["second"])
    assert service.describe() == {"popularity-count": v2}


def test_a_request_in_flight_keeps_the_model_it_started_with(tmp_path):
    store = ArtifactStore(tmp_path)
    v1 = publish_popularity(store, votes("old", "ab"))
    service = RecipeService(tmp_path, check_seconds=0)
    service.recommend("popularity-count", None)  # v1 is live
    inside, release = threading.Event(), threading.Event()
    results = {}

    def slow_allow(_poll: str) -> bool:
        inside.set()
        release.wait(10)
        return True

    def in_flight():
        results["slow"] = service.recommend("popularity-count", None, allow=slow_allow)

    worker = threading.Thread(target=in_flight)
    worker.start()
    assert inside.wait(10)
    v2 = publish_popularity(store, votes("new", "ab"))
    fast = service.recommend("popularity-count", None)  # swaps while the other runs
    release.set()
    worker.join(10)
    assert (fast.version, ids(fast)) == (v2, ["new"])
    assert (results["slow"].version, ids(results["slow"])) == (v1, ["old"])


def test_events_stored_after_training_count_at_once_and_old_ones_not_twice(tmp_path):
    training = votes("steady", "abc") + votes("rising", "a")
    events = EventStore(tmp_path / "events.sqlite3")
    events.append_many(training)  # the store holds what the model was trained on too
    publish_popularity(ArtifactStore(tmp_path / "artifacts"), training)
    service = RecipeService(tmp_path / "artifacts", events)
    assert ids(service.recommend("popularity-count", None)) == ["steady", "rising"]

    events.append_many(votes("rising", "bcd", T0 + 60))
    assert ids(service.recommend("popularity-count", None)) == ["rising", "steady"]
    answer = service.recommend("popularity-count", None)
    assert [round(i.score, 3) for i in answer.items] == [round(4 / 7, 3), round(3 / 7, 3)]
    events.close()


def test_events_the_model_cannot_fold_in_are_reported_and_the_tail_goes_on(
        tmp_path, caplog, monkeypatch):
    """A stored event the live model's ``observe`` rejects is logged as the model's
    failure (not as the store being unreadable), is not read again on every request,
    and does not stop the events stored after it from counting."""
    training = votes("steady", "abc")
    events = EventStore(tmp_path / "events.sqlite3")
    events.append_many(training)
    publish_popularity(ArtifactStore(tmp_path / "artifacts"), training)
    reported: list[tuple[str, int]] = []
    service = RecipeService(tmp_path / "artifacts", events,
                            on_fold_in_failure=lambda *args: reported.append(args))
    model = service.model("popularity-count")
    real_observe, calls = model.observe, []

    def observe(batch):
        batch = list(batch)
        calls.append(batch)
        if any(e.item_id == "poison" for e in batch):
            raise ValueError("cannot take this event")
        real_observe(batch)

    monkeypatch.setattr(model, "observe", observe)
    events.append_many(votes("poison", "d", T0 + 60))
    with caplog.at_level("WARNING", logger="recsys.serving"):
        assert ids(service.recommend("popularity-count", None)) == ["steady"]
        assert ids(service.recommend("popularity-count", None)) == ["steady"]
    failed = [r for r in caplog.records if "could not fold in stored events" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None  # once, with the cause
    assert not any("cannot read new events" in r.getMessage() for r in caplog.records)
    assert sum(any(e.item_id == "poison" for e in b) for b in calls) == 1  # not re-read
    # Counted where health and metrics read it: one batch of 1 event, reported once.
    assert service.fold_in_failures == {"popularity-count": 1}
    assert reported == [("popularity-count", 1)]
    events.append_many(votes("rising", "defg", T0 + 120))
    assert ids(service.recommend("popularity-count", None)) == ["rising", "steady"]
    events.close()


def test_trending_folds_stored_events_and_says_why(tmp_path):
    training = votes("a", "xyz", T0 + 10)
    events = EventStore(tmp_path / "events.sqlite3")
    model = TrendingNow().fit(TrainingData(training))
    ArtifactStore(tmp_path / "artifacts").publish(
        "trending-now", model, model.params(), "fp", extra={"trained_until": T0 + 10})
    service = RecipeService(tmp_path / "artifacts", events)
    quiet = service.recommend("trending-now", None, now=T0 + 3 * 3 * HOUR)
    assert quiet.reason == "popular-fallback" and ids(quiet) == ["a"]

    burst = [Interaction(f"v{k}", "b", "HUNCH", T0 + 3 * HOUR + k) for k in range(20)]
    events.append_many(burst + [Impression("v0", ("a",), T0 + 3 * HOUR)])
    hot = service.recommend("trending-now", None, now=T0 + 2 * 3 * HOUR)
    assert hot.reason == "trending" and ids(hot) == ["b"]
    events.close()


def test_missing_model_and_unknown_recipe_say_what_to_do(tmp_path):
    service = RecipeService(tmp_path)
    with pytest.raises(ArtifactNotFound, match="hunch train --recipe trending-now"):
        service.recommend("trending-now", "u")
    with pytest.raises(UnknownRecipe, match="popularity-count"):
        service.recommend("most-popular", "u")
    assert service.available() == []


def test_hunch_train_then_recommend_from_the_command_line(tmp_path):
    from click.testing import CliRunner

    from gateway.cli import cli
    from recsys.datasets import load_directory
    from recsys.demo_data import generate_demo_data

    generate_demo_data(tmp_path / "data", users=60, polls=80, days=2, seed=3)
    env = {"HUNCH_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", "--recipe", "popularity-count", "--data",
                                  str(tmp_path / "data"), "--param", "event_type=HUNCH",
                                  "--no-metrics"], env=env)
    assert trained.exit_code == 0, trained.output
    assert "published popularity-count version" in trained.output
    shown = runner.invoke(cli, ["recommend", "--user", "u0001", "-n", "3"], env=env)
    assert shown.exit_code == 0, shown.output
    expected = PopularityCount(event_type="HUNCH").fit(
        load_directory(tmp_path / "data").training_data()).recommend(None, 3)
    for item in expected:
        assert item.item_id in shown.output
    bad = runner.invoke(cli, ["recommend", "--user", "u1", "--recipe", "trending-now"], env=env)
    assert bad.exit_code == 2
    assert "hunch train --recipe trending-now" in bad.output
    # the API's rule for user ids: no cold-start answer for " u0001", no ESC to the terminal
    for hostile in (" u0001", "", "u\x1b]0;owned\x07"):
        refused = runner.invoke(cli, ["recommend", "--user", hostile], env=env)
        assert refused.exit_code == 2, (hostile, refused.output)
        assert "--user" in refused.output and "\x1b" not in refused.output


class CountingEvents:
    """An event store that counts the serving layer's reads of it."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.reads: list[str] = []

    def events_since(self, seq: int, limit: int = 10_000):
        self.reads.append("events_since")
        return self.store.events_since(seq, limit)

    def last_seq(self) -> int:
        self.reads.append("last_seq")
        return self.store.last_seq()


def test_within_a_request_the_recipes_read_the_store_once_and_still_see_new_events(tmp_path):
    from recsys.event_head import EventHead

    training = votes("steady", "abc") + votes("rising", "a")
    events = EventStore(tmp_path / "events.sqlite3")
    events.append_many(training)
    artifacts = ArtifactStore(tmp_path / "artifacts")
    publish_popularity(artifacts, training)
    model = TrendingNow().fit(TrainingData(training))
    artifacts.publish("trending-now", model, model.params(), "fp",
                      extra={"trained_until": T0})
    counting = CountingEvents(events)
    head = EventHead(counting)
    service = RecipeService(tmp_path / "artifacts", counting, head=head)
    for recipe in ("popularity-count", "trending-now"):
        service.recommend(recipe, None)  # loaded and caught up
    counting.reads.clear()
    with head.request():  # nothing new: one read of the head for both recipes
        service.recommend("popularity-count", None)
        service.recommend("trending-now", None)
    assert counting.reads == ["last_seq"]

    events.append_many(votes("rising", "bcd", T0 + 60))  # stored by another process
    counting.reads.clear()
    with head.request():
        assert ids(service.recommend("popularity-count", None)) == ["rising", "steady"]
    assert counting.reads == ["last_seq", "events_since"]
    counting.reads.clear()
    service.recommend("popularity-count", None)  # outside a request: reads as before
    assert counting.reads == ["events_since"]
    events.close()


def test_polls_written_after_training_reach_a_model_loaded_later(tmp_path):
    """A worker that starts (or loads the version) after polls were written is told of
    them from the store's catalog sequence: before, a poll without a vote yet left every
    feed at a restart, and an edit went back to the trained text."""
    from recsys.training import train_from_store

    events = EventStore(tmp_path / "events.sqlite3")
    events.upsert_items([{"ITEM_ID": p, "CATEGORY": "news", "CREATION_TIMESTAMP": T0}
                         for p in "abc"])
    events.append_many(votes("a", "xyz") + votes("b", "xy") + votes("c", "x"))
    for recipe in ("user-personalization", "popularity-count"):
        train_from_store(recipe, events, tmp_path / "artifacts", with_metrics=False)
    events.upsert_item({"ITEM_ID": "fresh", "CATEGORY": "news", "QUESTION": "new?"},
                       acting_user="writer")
    events.upsert_item({"ITEM_ID": "b", "CATEGORY": "sports"}, acting_user="ops", admin=True)

    service = RecipeService(tmp_path / "artifacts", events)  # a worker started now
    up = service.model("user-personalization")
    assert "fresh" in up.item_index_
    answer = service.recommend("user-personalization", "z", 10,
                               allow=lambda poll: poll == "fresh")
    assert [i.item_id for i in answer.items] == ["fresh"]
    assert "fresh" in service.model("popularity-count")._items.index
    # The edit too: b's content is its new category's, not the trained one's.
    trained = ArtifactStore(tmp_path / "artifacts").load("user-personalization").model
    b = up.item_index_["b"]
    assert not np.array_equal(up.content_[b], trained.content_[b])
    assert np.array_equal(up.content_[up.item_index_["a"]], trained.content_[b])
    events.close()


def test_a_poll_added_while_a_new_version_is_prepared_reaches_it(tmp_path):
    """The refresher hands a poll to every live version; one being prepared for a swap
    was not live yet, and never got it (helper-61)."""
    from recsys.training import train_from_store

    events = EventStore(tmp_path / "events.sqlite3")
    events.upsert_items([{"ITEM_ID": p, "CATEGORY": "news", "CREATION_TIMESTAMP": T0}
                         for p in "abc"])
    events.append_many(votes("a", "xyz") + votes("b", "xy"))
    train_from_store("popularity-count", events, tmp_path / "artifacts", with_metrics=False)
    service = RecipeService(tmp_path / "artifacts", events, check_seconds=0)
    service.model("popularity-count")
    train_from_store("popularity-count", events, tmp_path / "artifacts", with_metrics=False)
    real_tail = service._tail

    def tail(live):  # meanwhile, the refresher delivers a poll another worker wrote
        if live.artifact.model is not service._live["popularity-count"].artifact.model:
            service.add_items({"late": events.upsert_item(
                {"ITEM_ID": "late", "CATEGORY": "news"}, acting_user="w")})
        real_tail(live)

    service._tail = tail
    swapped = service.model("popularity-count")
    assert "late" in swapped._items.index
    events.close()
