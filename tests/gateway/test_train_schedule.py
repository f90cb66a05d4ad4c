"""``hunch train --schedule``: a real trainer process retrains from the event store into
the shared S3 store every interval, survives a failed round, and stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from recsys.artifacts import S3ArtifactStore
from recsys.datasets import import_directory
from recsys.demo_data import generate_demo_data
from recsys.events import EventStore, Interaction
from tests.s3_server import s3, s3_server  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ("popularity-count", "trending-now")
# Deadlines, not measurements: how long to wait for the trainer on a shared machine.
WAIT_SECONDS = 120


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def test_the_schedule_retrains_from_the_event_store_and_stops_on_sigterm(s3, tmp_path):
    home = tmp_path / "trainer-home"
    log_path = tmp_path / "trainer.log"
    env = {**s3.env(), "HUNCH_HOME": str(home), "HUNCH_ARTIFACTS_URL": s3.url()}
    command = [sys.executable, "-m", "gateway", "train", "--schedule", "0.5", "--no-metrics"]
    for recipe in RECIPES:
        command += ["--recipe", recipe]
    with log_path.open("w") as log:
        trainer = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        # No event store yet: the round fails, is logged, and the schedule goes on.
        wait_for(lambda: "round 2 failed" in log_path.read_text(), "two failed rounds")
        assert trainer.poll() is None, log_path.read_text()
        generate_demo_data(tmp_path / "data", users=40, polls=50, days=2, seed=5)
        home.mkdir(parents=True, exist_ok=True)
        import_directory(tmp_path / "data", home / "events.sqlite3")

        store = S3ArtifactStore(s3.url(), tmp_path / "check-cache",
                                endpoint_url=s3.endpoint_url)
        wait_for(lambda: all(store.versions(r) for r in RECIPES), "the first versions")
        # Rounds with no new data publish nothing (every gateway would swap for nothing).
        wait_for(lambda: "no new data" in log_path.read_text(), "a round without new data")
        events = EventStore(home / "events.sqlite3")
        imported_seq = events.last_seq()
        now = int(time.time())
        events.append_many(Interaction(f"late{k}", "p0001", "HUNCH", now) for k in range(5))
        events.close()
        wait_for(lambda: all(len(store.versions(r)) >= 2 for r in RECIPES),
                 "a second version of each recipe, trained on the new events")
    finally:
        trainer.send_signal(signal.SIGTERM)
        try:
            code = trainer.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            trainer.kill()
            raise
    output = log_path.read_text()
    assert code == 0, output
    assert "training schedule stopped" in output
    assert "no event store" in output  # the failed rounds said what to fix
    events = EventStore(home / "events.sqlite3")
    last_seq = events.last_seq()
    events.close()
    for recipe in RECIPES:
        versions = store.versions(recipe)
        assert len(versions) == 2, (recipe, versions, output)
        trained_on = [store.load(recipe, v).manifest["event_seq"] for v in versions]
        assert trained_on == [imported_seq, last_seq]
        assert store.load(recipe).model.recommend(None, 3)


def test_hunch_train_without_data_trains_every_recipe_on_the_event_store(tmp_path):
    from click.testing import CliRunner

    from gateway.cli import cli
    from recsys.artifacts import ArtifactStore

    env = {"HUNCH_HOME": str(tmp_path / "home"), "HUNCH_ARTIFACTS_URL": ""}
    runner = CliRunner()
    missing = runner.invoke(cli, ["train", "--no-metrics"], env=env)
    assert missing.exit_code == 2 and "no event store" in missing.output
    ambiguous = runner.invoke(cli, ["train", "--param", "event_type=HUNCH"], env=env)
    assert ambiguous.exit_code == 2 and "exactly one --recipe" in ambiguous.output

    generate_demo_data(tmp_path / "data", users=30, polls=40, days=2, seed=7)
    import_directory(tmp_path / "data", tmp_path / "home" / "events.sqlite3")
    trained = runner.invoke(cli, ["train", "--no-metrics"], env=env)
    assert trained.exit_code == 0, trained.output
    store = ArtifactStore(tmp_path / "home" / "artifacts")
    for recipe in ("popularity-count", "trending-now", "user-personalization"):
        assert f"published {recipe} version {store.latest(recipe)}" in trained.output
        assert store.manifest(recipe)["event_store"].endswith("events.sqlite3')")
