"""Shared artifacts on S3 (a real S3-compatible endpoint over HTTP, moto's server): one
host publishes, another hot-swaps; half-published versions stay invisible; versions are
immutable; a store that cannot be reached is a typed error and serving goes on."""

from __future__ import annotations

import threading
import uuid

import pytest

from recsys.artifacts import (
    MANIFEST_FILE,
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStoreUnavailable,
    InvalidArtifactLocation,
    S3ArtifactStore,
    open_artifact_store,
)
from recsys.events import Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.popularity_count import PopularityCount
from recsys.serving import RecipeService
from recsys.training import train_from_store
from tests.s3_server import s3, s3_server  # noqa: F401 - fixtures
from tests.servers import free_port

POP = "popularity-count"


class Clock:
    """A hand-moved clock, so the polls happen when the test says."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def favouring(poll: str, other: str = "filler") -> PopularityCount:
    """A model whose top poll is ``poll``."""
    votes = [Interaction(f"u{k}", poll, "HUNCH", 1000 + k) for k in range(3)]
    votes.append(Interaction("u9", other, "HUNCH", 1010))
    return PopularityCount().fit(TrainingData(votes))


def top(service: RecipeService) -> tuple[str, str]:
    answer = service.recommend(POP, None, 1)
    return answer.version, answer.items[0].item_id


def host(s3, tmp_path, name: str) -> S3ArtifactStore:
    """One host's view of the shared bucket: its own client and download cache."""
    return S3ArtifactStore(s3.url(), tmp_path / name / "cache", endpoint_url=s3.endpoint_url)


def keys(s3) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=s3.bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_a_version_published_on_one_host_is_hot_swapped_in_on_another(s3, tmp_path):
    trainer = host(s3, tmp_path, "a")
    v1 = trainer.publish(POP, favouring("first"), {}, "fp1")
    clock = Clock()
    service = RecipeService(host(s3, tmp_path, "b"), check_seconds=5, clock=clock)
    assert top(service) == (v1, "first")

    v2 = trainer.publish(POP, favouring("second"), {}, "fp2")
    clock.t = 1  # within the poll interval: the store is not asked again
    assert top(service) == (v1, "first")
    clock.t = 6
    assert top(service) == (v2, "second")
    # Host B loaded it from its own cache, downloaded whole (model files and manifest).
    served = service.store.load(POP, v2)
    assert served.path == tmp_path / "b" / "cache" / s3.bucket / "models" / POP / v2
    assert (served.path / MANIFEST_FILE).is_file()
    assert served.manifest["data_fingerprint"] == "fp2"


def test_a_half_published_version_is_never_loaded(s3, tmp_path):
    trainer = host(s3, tmp_path, "a")
    v1 = trainer.publish(POP, favouring("whole"), {}, "fp")
    clock = Clock()
    service = RecipeService(host(s3, tmp_path, "b"), check_seconds=5, clock=clock)
    assert top(service) == (v1, "whole")

    # A publisher killed after uploading the model files, before the manifest: the
    # files are there under a newer version's folder (a copy of a real model's files).
    client = s3.client()
    newer = "99999999T000000.000000Z"
    for key in [k for k in keys(s3) if f"/{v1}/" in k]:
        rest = key.split(f"/{v1}/", 1)[1]
        client.copy_object(Bucket=s3.bucket, Key=f"models/{POP}/{newer}/{rest}",
                           CopySource={"Bucket": s3.bucket, "Key": key})
    assert any(f"/{newer}/" in k for k in keys(s3))
    # A publisher interrupted while committing removes its files and commits nothing.
    interrupted = host(s3, tmp_path, "c")

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt

    interrupted._commit = killed
    with pytest.raises(KeyboardInterrupt):
        interrupted.publish(POP, favouring("half"), {}, "fp", version="99999999T999999.0Z")
    assert not any("99999999T999999.0Z" in k for k in keys(s3))

    clock.t = 60
    assert trainer.versions(POP) == [v1]
    assert top(service) == (v1, "whole")
    with pytest.raises(ArtifactNotFound, match=newer):
        host(s3, tmp_path, "d").load(POP, newer)


def test_an_interrupt_after_the_manifest_is_written_keeps_the_version_whole(s3, tmp_path):
    """SIGTERM stops a trainer anywhere: right after its manifest was committed it had
    removed the files of a published version (seen in test_train_schedule, a flake)."""
    trainer = host(s3, tmp_path, "a")
    real_commit = trainer._commit

    def committed_then_killed(*args, **kwargs):
        real_commit(*args, **kwargs)
        raise KeyboardInterrupt

    trainer._commit = committed_then_killed
    with pytest.raises(KeyboardInterrupt):
        trainer.publish(POP, favouring("kept"), {}, "fp", version="v0001")
    assert host(s3, tmp_path, "b").load(POP, "v0001").model.recommend(None, 1)[0].item_id \
        == "kept"


def test_publishing_a_version_twice_is_refused_even_in_a_race(s3, tmp_path):
    first, second = host(s3, tmp_path, "a"), host(s3, tmp_path, "b")
    first.publish(POP, favouring("winner"), {}, "fp", version="v0001")
    with pytest.raises(ArtifactExists, match="v0001 already exists"):
        second.publish(POP, favouring("loser"), {}, "fp", version="v0001")
    # Both saw no manifest before uploading (the race): the conditional put decides.
    second._exists = lambda _recipe, _version: False
    with pytest.raises(ArtifactExists, match="published meanwhile"):
        second.publish(POP, favouring("loser"), {}, "fp", version="v0001")
    assert first.versions(POP) == ["v0001"]
    loaded = host(s3, tmp_path, "c").load(POP, "v0001")
    assert loaded.model.recommend(None, 1)[0].item_id == "winner"
    # The loser's uploads were removed: only the winner's files and manifest remain.
    upload = loaded.manifest["storage"]["upload"]
    assert all(upload in k or k.endswith(".manifest.json") for k in keys(s3))


def test_an_unreachable_store_is_a_typed_error_and_serving_keeps_the_live_version(s3,
                                                                                   tmp_path):
    # One attempt: botocore's retries with backoff would only make the test slower.
    dead = S3ArtifactStore(s3.url(), tmp_path / "cache",
                           endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)
    with pytest.raises(ArtifactStoreUnavailable, match="HUNCH_S3_ENDPOINT_URL"):
        dead.versions(POP)
    with pytest.raises(ArtifactStoreUnavailable, match="HUNCH_S3_ENDPOINT_URL"):
        dead.publish(POP, favouring("x"), {}, "fp")
    missing = S3ArtifactStore(f"s3://no-such-{uuid.uuid4().hex[:8]}/m", tmp_path / "cache",
                              endpoint_url=s3.endpoint_url, max_attempts=1)
    with pytest.raises(ArtifactStoreUnavailable, match="does not exist: create it"):
        missing.latest(POP)

    store = host(s3, tmp_path, "a")
    v1 = store.publish(POP, favouring("live"), {}, "fp")
    clock = Clock()
    service = RecipeService(store, check_seconds=5, clock=clock)
    assert top(service) == (v1, "live")
    store.client = dead.client  # the endpoint goes away
    clock.t = 10
    assert top(service) == (v1, "live")
    assert service.available() == [POP]
    fresh = RecipeService(dead)  # nothing live: the typed error reaches the caller
    with pytest.raises(ArtifactStoreUnavailable):
        fresh.recommend(POP, None)


def test_store_locations_are_checked(tmp_path):
    with pytest.raises(InvalidArtifactLocation, match="s3://bucket/prefix"):
        open_artifact_store("ftp://host/models", cache_dir=tmp_path)
    with pytest.raises(InvalidArtifactLocation, match="s3://bucket/prefix"):
        open_artifact_store("s3:/bucket/models", cache_dir=tmp_path)  # not a directory
    with pytest.raises(InvalidArtifactLocation, match="cache directory"):
        open_artifact_store("s3://bucket/models")
    assert open_artifact_store(tmp_path).location == str(tmp_path)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_model_trained_from_the_event_store_counts_later_events_once(s3, tmp_path, kind,
                                                                        request):
    from recsys.event_stores import open_event_store

    url = (str(tmp_path / "events.sqlite3") if kind == "sqlite"
           else request.getfixturevalue("postgres_url"))  # the shared store of several hosts
    events = open_event_store(url, upgrade=True)  # as `hunch db upgrade` leaves it
    events.append_many([Interaction(u, "steady", "HUNCH", 1000 + i)
                        for i, u in enumerate("abc")] + [Interaction("a", "rising", "HUNCH", 1005)])
    manifest = train_from_store(POP, events, host(s3, tmp_path, "trainer"), with_metrics=False)
    assert manifest["event_seq"] == events.last_seq() == 4
    assert manifest["dataset"]["interactions"] == 4
    # Events stored after training (older timestamps too): folded in once by serving.
    events.append_many([Interaction(u, "rising", "HUNCH", 1001) for u in "bcd"])
    service = RecipeService(host(s3, tmp_path, "server"), events)
    answer = service.recommend(POP, None)
    assert [(i.item_id, round(i.score, 3)) for i in answer.items] == [
        ("rising", round(4 / 7, 3)), ("steady", round(3 / 7, 3))]
    events.close()


def test_a_server_downloads_a_new_version_off_the_request_path(s3, tmp_path):
    trainer = host(s3, tmp_path, "a")
    v1 = trainer.publish(POP, favouring("first"), {}, "fp1")
    downloading, finish = threading.Event(), threading.Event()

    class SlowHost(S3ArtifactStore):
        def load(self, recipe, version=None):
            if version != v1:  # the new version: a long download
                downloading.set()
                assert finish.wait(60)
            return super().load(recipe, version)

    server = SlowHost(s3.url(), tmp_path / "b", endpoint_url=s3.endpoint_url)
    clock = Clock()
    service = RecipeService(server, check_seconds=5, clock=clock, background_swap=True)
    assert top(service) == (v1, "first")  # nothing live yet: loaded by the request
    v2 = trainer.publish(POP, favouring("second"), {}, "fp2")
    clock.t = 6
    # The request that notices v2 is answered by v1 while v2 downloads elsewhere.
    assert top(service) == (v1, "first")
    assert downloading.wait(60)
    assert top(service) == (v1, "first")
    finish.set()
    for _ in range(600):
        if service.describe() == {POP: v2}:
            break
        threading.Event().wait(0.1)
    assert top(service) == (v2, "second")
