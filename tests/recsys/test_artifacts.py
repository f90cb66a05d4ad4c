"""Versioned artifacts: published whole or not at all, never modified, newest found."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from recsys.artifacts import (
    MANIFEST_FILE,
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStore,
    UnknownRecipe,
    recipe_class,
)
from recsys.events import Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.popularity_count import PopularityCount
from recsys.recipes.trending_now import TrendingNow


def popularity(*polls: str) -> PopularityCount:
    events = [Interaction(f"u{k}", p, "HUNCH", 1000 + k) for k, p in enumerate(polls)]
    return PopularityCount().fit(TrainingData(events))


def test_publish_then_load_gives_the_same_model_and_a_full_manifest(tmp_path):
    store = ArtifactStore(tmp_path)
    model = popularity("a", "a", "b")
    version = store.publish("popularity-count", model, {"event_type": None}, "fp123",
                            {"coverage": 0.5}, extra={"trained_until": 1002})
    loaded = store.load("popularity-count")
    assert loaded.version == version
    assert loaded.model.recommend(None) == model.recommend(None)
    manifest = json.loads((tmp_path / "popularity-count" / version / MANIFEST_FILE).read_text())
    assert manifest["recipe"] == "popularity-count" and manifest["version"] == version
    assert manifest["parameters"] == {"event_type": None}
    assert manifest["data_fingerprint"] == "fp123"
    assert manifest["metrics"] == {"coverage": 0.5}
    assert manifest["trained_until"] == 1002
    assert manifest["created_at"].endswith("+00:00")


def test_versions_are_ordered_and_latest_is_the_newest(tmp_path):
    store = ArtifactStore(tmp_path)
    assert store.latest("trending-now") is None
    published = [store.publish("popularity-count", popularity(p), {}, "fp") for p in "xyz"]
    assert store.versions("popularity-count") == published
    assert store.latest("popularity-count") == published[-1]
    assert store.load("popularity-count").model.recommend(None)[0].item_id == "z"
    assert store.load("popularity-count", published[0]).model.recommend(None)[0].item_id == "x"


def test_published_versions_are_read_only_and_cannot_be_republished(tmp_path):
    store = ArtifactStore(tmp_path)
    store.publish("popularity-count", popularity("a"), {}, "fp", version="v1")
    version_dir = tmp_path / "popularity-count" / "v1"
    for dirpath, _, filenames in os.walk(version_dir):
        for path in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
            assert os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0
    before = (version_dir / MANIFEST_FILE).read_bytes()
    with pytest.raises(ArtifactExists, match="new version"):
        store.publish("popularity-count", popularity("b"), {}, "other", version="v1")
    assert (version_dir / MANIFEST_FILE).read_bytes() == before


def test_a_failed_save_leaves_nothing_behind(tmp_path):
    class BrokenModel(PopularityCount):
        def save(self, directory):
            super().save(directory)
            raise OSError("disk full")

    store = ArtifactStore(tmp_path)
    broken = BrokenModel().fit(TrainingData([Interaction("u", "p", "HUNCH", 1)]))
    with pytest.raises(OSError, match="disk full"):
        store.publish("popularity-count", broken, {}, "fp")
    assert store.versions("popularity-count") == []
    assert os.listdir(tmp_path / "popularity-count") == []


def test_a_reader_polling_during_publishes_only_sees_whole_versions(tmp_path):
    store = ArtifactStore(tmp_path)
    done = threading.Event()
    seen: set[str] = set()

    def publish_many():
        for k in range(15):
            store.publish("trending-now", TrendingNow().fit(TrainingData(
                [Interaction("u", f"p{k}", "HUNCH", 10_000 + k)])), {}, "fp")
        done.set()

    writer = threading.Thread(target=publish_many)
    writer.start()
    while not done.is_set() or len(seen) < 15:
        for version in store.versions("trending-now"):
            if version not in seen:
                artifact = store.load("trending-now", version)  # never half-written
                assert artifact.manifest["version"] == version
                seen.add(version)
    writer.join()
    assert len(seen) == 15


def test_misuse_gets_a_message_that_says_what_to_do(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactNotFound, match="hunch train --recipe trending-now"):
        store.load("trending-now")
    store.publish("trending-now", TrendingNow().fit(TrainingData([])), {}, "fp")
    with pytest.raises(ArtifactNotFound, match="no version 'nope'"):
        store.load("trending-now", "nope")
    with pytest.raises(UnknownRecipe, match="popularity-count"):
        store.versions("popularity")
    with pytest.raises(UnknownRecipe, match="trending-now"):
        recipe_class("hrnn")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from recsys.demo_data import generate_demo_data

    out = tmp_path_factory.mktemp("demo")
    generate_demo_data(out, users=60, polls=80, days=2, seed=3)
    return out


def test_train_publishes_a_version_with_fingerprint_metrics_and_horizon(demo_dir, tmp_path):
    from recsys.datasets import load_directory
    from recsys.training import train

    steps: list[str] = []
    manifest = train("trending-now", demo_dir, tmp_path, {"trend_discovery_frequency": "1 hour"},
                     progress=steps.append)
    data = load_directory(demo_dir)
    assert steps == ["load", "fit", "publish", "evaluate"]
    assert manifest["data_fingerprint"] == data.fingerprint
    assert manifest["parameters"]["trend_discovery_frequency"] == "1 hour"
    assert manifest["trained_until"] == max(e.timestamp for e in data.interactions)
    assert 0 < manifest["metrics"]["coverage"] <= 1
    assert "precision_at_10" in manifest["metrics"]
    # Recorded beside the version, which never changes after publishing.
    store = ArtifactStore(tmp_path)
    assert store.metrics("trending-now", manifest["version"])["metrics"] == manifest["metrics"]
    assert store.manifest("trending-now", manifest["version"])["metrics"] == {}
    again = train("trending-now", demo_dir, tmp_path, {"trend_discovery_frequency": "1 hour"},
                  with_metrics=False)
    assert again["version"] != manifest["version"]
    assert again["data_fingerprint"] == manifest["data_fingerprint"]
    assert ArtifactStore(tmp_path).latest("trending-now") == again["version"]


def test_train_refuses_bad_parameters_before_publishing(demo_dir, tmp_path):
    from recsys.recipes.trending_now import InvalidTrendDiscoveryFrequency
    from recsys.training import InvalidTrainingParameter, parse_params, train

    with pytest.raises(InvalidTrainingParameter, match="takes: event_type"):
        train("popularity-count", demo_dir, tmp_path, {"frequency": 3})
    with pytest.raises(InvalidTrendDiscoveryFrequency, match="3 hours"):
        train("trending-now", demo_dir, tmp_path, {"trend_discovery_frequency": "weekly"})
    assert ArtifactStore(tmp_path).versions("popularity-count") == []
    assert parse_params(["event_value_threshold=2.5", "event_type=HUNCH",
                         "trend_discovery_frequency=1 day"]) == {
        "event_value_threshold": 2.5, "event_type": "HUNCH", "trend_discovery_frequency": "1 day"}
    with pytest.raises(InvalidTrainingParameter, match="key=value"):
        parse_params(["oops"])
