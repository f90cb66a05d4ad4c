"""Training publishes first and computes offline metrics after (issue 14, item 6): a
model serves while its metrics, a second fit as long as the first, are computed; the
metrics are then recorded beside the version, which never changes."""

from __future__ import annotations

import json

import pytest

from recsys import training
from recsys.artifacts import METRICS_SUFFIX, ArtifactNotFound, ArtifactStore, S3ArtifactStore
from recsys.datasets import import_directory
from recsys.events import EventStore
from tests.s3_server import s3, s3_server  # noqa: F401 - fixtures

UP = "user-personalization"
SMALL_UP = {"factors": 8, "iterations": 4}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from recsys.demo_data import generate_demo_data

    out = tmp_path_factory.mktemp("demo")
    generate_demo_data(out, users=60, polls=80, days=2, seed=3)
    return out


@pytest.fixture
def events(demo_dir, tmp_path):
    path = tmp_path / "events.sqlite3"
    import_directory(demo_dir, path)
    store = EventStore(path)
    yield store
    store.close()


def watch_metrics(monkeypatch, check) -> list[str]:
    """Call ``check(recipe)`` whenever offline metrics start; returns the recipes seen."""
    seen: list[str] = []
    real = training.offline_metrics

    def watched(recipe_name, params, data, seed=0):
        check(recipe_name)
        seen.append(recipe_name)
        return real(recipe_name, params, data, seed)

    monkeypatch.setattr(training, "offline_metrics", watched)
    return seen


def test_the_model_serves_before_its_metrics_are_computed(events, tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path / "artifacts")
    user = next(iter(events.users()))["USER_ID"]

    def published_and_usable(recipe):
        version = store.latest(recipe)
        assert version is not None, "metrics started before the model was published"
        assert store.metrics(recipe, version) is None
        assert store.load(recipe, version).model.recommend(user, 5)
        assert store.manifest(recipe, version)["metrics_note"] == training.METRICS_PENDING

    seen = watch_metrics(monkeypatch, published_and_usable)
    manifest = training.train_from_store(UP, events, store, SMALL_UP)
    assert seen == [UP]
    recorded = store.metrics(UP, manifest["version"])
    assert recorded["version"] == manifest["version"]
    assert 0 < recorded["metrics"]["coverage"] <= 1
    assert manifest["metrics"] == recorded["metrics"] and "metrics_note" not in manifest
    # The version itself is as published: its manifest keeps no metrics.
    assert store.manifest(UP, manifest["version"])["metrics"] == {}
    assert store.versions(UP) == [manifest["version"]]  # the metrics file is no version


def test_hunch_train_publishes_every_recipe_before_any_metrics(demo_dir, tmp_path,
                                                               monkeypatch):
    from click.testing import CliRunner

    from gateway.cli import cli

    home = tmp_path / "home"
    home.mkdir()
    import_directory(demo_dir, home / "events.sqlite3")
    monkeypatch.setenv("HUNCH_HOME", str(home))
    for name in ("HUNCH_DB_PATH", "HUNCH_ARTIFACTS_PATH", "HUNCH_ARTIFACTS_URL",
                 "HUNCH_EVENT_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    store = ArtifactStore(home / "artifacts")
    recipes = ("popularity-count", UP)

    def all_published(_recipe):
        from threadpoolctl import threadpool_info

        assert all(store.latest(r) for r in recipes), "metrics before every recipe served"
        # One BLAS thread (TRAIN_BLAS_THREADS): two spun for a shared core.
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {1}

    seen = watch_metrics(monkeypatch, all_published)
    run = CliRunner().invoke(cli, ["train", *[a for r in recipes for a in ("--recipe", r)]])
    assert run.exit_code == 0, run.output
    assert seen == list(recipes)
    lines = run.output.splitlines()
    published = [k for k, line in enumerate(lines) if line.startswith("published ")]
    metrics = [k for k, line in enumerate(lines) if line.startswith("offline metrics of ")]
    assert len(published) == len(metrics) == 2 and max(published) < min(metrics)
    for recipe in recipes:
        assert store.metrics(recipe)["metrics"]["coverage"] > 0


def test_metrics_of_a_version_that_does_not_exist_are_refused(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactNotFound, match="no version"):
        store.record_metrics(UP, "v1", {"coverage": 0.5})
    assert not list(tmp_path.rglob(f"*{METRICS_SUFFIX}"))


def test_s3_records_metrics_beside_the_version(s3, tmp_path, events):
    store = S3ArtifactStore(s3.url(), tmp_path / "cache", endpoint_url=s3.endpoint_url)
    manifest = training.train_from_store("popularity-count", events, store)
    version = manifest["version"]
    assert store.versions("popularity-count") == [version]
    assert store.metrics("popularity-count", version)["metrics"] == manifest["metrics"]
    assert store.manifest("popularity-count", version)["metrics"] == {}
    store.record_metrics("popularity-count", version, {"coverage": 0.25}, "recomputed")
    again = store.metrics("popularity-count")
    assert again["metrics"] == {"coverage": 0.25} and again["metrics_note"] == "recomputed"
    with pytest.raises(ArtifactNotFound):
        store.record_metrics("popularity-count", "v0", {"coverage": 0.5})
    json.dumps(again)  # plain JSON, as read back


def test_the_blas_limit_reaches_every_blas_library_of_a_fresh_process():
    """In a fresh ``hunch train`` process no BLAS is loaded when the limit is set; one
    loaded later would keep its default threads (two spun for a shared core)."""
    import subprocess
    import sys
    from pathlib import Path

    probe = ("from gateway.cli.recipes import blas_limited\n"
             "with blas_limited(1):\n"
             "    import recsys.ease, implicit.cpu.als\n"
             "    from threadpoolctl import threadpool_info\n"
             "    print(sorted({i['num_threads'] for i in threadpool_info()"
             " if i['user_api'] == 'blas'}), len([i for i in threadpool_info()"
             " if i['user_api'] == 'blas']))\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=True,
                         env={"OPENBLAS_NUM_THREADS": "2", "PATH": ""})
    threads, libraries = run.stdout.split("] ")
    assert threads + "]" == "[1]" and int(libraries) >= 1, run.stdout


def test_a_gateway_worker_limits_scipys_blas_too(tmp_path):
    """The gateway worker set its BLAS limit before scipy.linalg was loaded, so scipy's
    own OpenBLAS kept its default threads (2 here) for every request's linear algebra."""
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import sys\n"
             "from pathlib import Path\n"
             "from gateway.settings import Settings\n"
             "from gateway.services import Services\n"
             "Services(Settings(home=Path(sys.argv[1])))\n"
             "import scipy.linalg, recsys.ease\n"
             "from threadpoolctl import threadpool_info\n"
             "print(sorted({i['num_threads'] for i in threadpool_info()"
             " if i['user_api'] == 'blas'}))\n")
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "home")],
                         capture_output=True, text=True, cwd=root, check=True,
                         env={"OPENBLAS_NUM_THREADS": "2", "PATH": "", "PYTHONPATH": str(root)})
    assert run.stdout.strip().splitlines()[-1] == "[1]", run.stdout + run.stderr


def test_data_without_interactions_publishes_nothing(demo_dir, tmp_path):
    """`hunch train --data` on an interactions.csv of only its header published
    Popularity-Count and Trending-Now trained on nothing, then failed on
    User-Personalization; training from the store refused it before any recipe."""
    from click.testing import CliRunner

    from gateway.cli import cli

    data = tmp_path / "header-only"
    data.mkdir()
    for f in demo_dir.iterdir():
        if f.is_file():
            (data / f.name).write_bytes(f.read_bytes())
    lines = (data / "interactions.csv").read_text().splitlines()
    (data / "interactions.csv").write_text(lines[0] + "\n")
    artifacts = tmp_path / "artifacts"
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--artifacts",
                                      str(artifacts)], env={"HUNCH_HOME": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert "holds no interactions" in result.output
    assert "published" not in result.output
    assert not artifacts.exists() or not any(artifacts.rglob("*.json")), \
        list(artifacts.rglob("*"))
