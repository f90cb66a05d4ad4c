"""The Docker route, checked without Docker (issue 13: the container listened on
127.0.0.1, compose never selected Neo4j, and every start re-imported the demo, deleting
the events acknowledged in the previous run)."""

from __future__ import annotations

import asyncio

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gateway.settings import Settings
from recsys.events import EventStore, Interaction

ROOT = Path(__file__).resolve().parents[2]
PREFIX = Settings.model_config["env_prefix"]


def _dockerfile_env() -> dict[str, str]:
    """ENV KEY=VALUE pairs of the Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0].upper() == "ENV":
            assert all("=" in w for w in words[1:]), f"use ENV KEY=VALUE: {line}"
            env.update(w.split("=", 1) for w in words[1:])
    return env


def _compose_env(service: str) -> dict[str, str]:
    """A compose service's environment, ${VAR:-default} read as its default."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"][service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def _hunch_vars() -> list[tuple[str, str, str]]:
    found = [("Dockerfile", k, v) for k, v in _dockerfile_env().items()]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in compose["services"]:
        found += [(f"docker-compose.yml {service}", k, v)
                  for k, v in _compose_env(service).items()]
    return [(where, k, v) for where, k, v in found if k.startswith(PREFIX)]


def test_every_hunch_variable_of_the_docker_route_is_a_setting():
    variables = _hunch_vars()
    assert variables, "the Docker route sets no HUNCH_* variable?"
    fields = set(Settings.model_fields)
    unknown = [f"{where}: {k}" for where, k, _ in variables
               if k.removeprefix(PREFIX).lower() not in fields]
    assert not unknown, f"not settings (pydantic ignores them silently): {unknown}"


def test_the_container_serves_on_all_interfaces_against_the_compose_neo4j(monkeypatch):
    for name in os.environ:  # only what the image and compose set
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(ROOT / "tests")  # no .env file here
    for _, key, value in _hunch_vars():
        monkeypatch.setenv(key, value)
    container = Settings()  # validates every value too (Literal stores, ints)
    assert container.host == "0.0.0.0"
    assert container.graph_store == "neo4j"
    assert container.neo4j_uri == "bolt://neo4j:7687"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "neo4j" in compose["services"]


GATEWAYS = ("gateway-a", "gateway-b")


def test_compose_runs_two_gateway_replicas_on_one_postgres_and_one_redis(monkeypatch):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # parses (anchors too)
    services = compose["services"]
    assert services["postgres"]["image"].split(":")[0] == "postgres"
    assert services["redis"]["image"].split(":")[0] == "redis"
    monkeypatch.chdir(ROOT / "tests")  # no .env file here
    replicas = []
    for name in GATEWAYS:
        for key in [k for k in os.environ if k.startswith(PREFIX)]:
            monkeypatch.delenv(key)
        for key, value in {**_dockerfile_env(), **_compose_env(name)}.items():
            monkeypatch.setenv(key, value)
        replicas.append(Settings())
        # A replica starts once the shared state is up and the demo is prepared.
        needs = services[name]["depends_on"]
        assert needs["init"]["condition"] == "service_completed_successfully"
        assert needs["redis"]["condition"] == "service_healthy"
        assert "postgres" in services["init"]["depends_on"]
        # Its models come from the volume that init trained into.
        assert f"artifacts:{replicas[-1].artifacts_dir}" in services[name]["volumes"]
        assert f"artifacts:{replicas[-1].artifacts_dir}" in services["init"]["volumes"]
    a, b = replicas
    # One store on the compose postgres, one Redis for sessions and limits, one secret.
    for replica in replicas:
        assert replica.store_url.startswith("postgresql://")
        assert replica.store_url.split("@", 1)[1].startswith("postgres:")
        assert replica.session_store == "redis"
        assert replica.redis_url.startswith("redis://redis:")
    assert a.store_url == b.store_url and a.redis_url == b.redis_url
    assert a.artifacts_dir == b.artifacts_dir
    assert (a.jwt_secret, a.cursor_secret) == (b.jwt_secret, b.cursor_secret)
    # Reachable side by side from the host.
    published = [services[name]["ports"][0].rsplit(":", 2) for name in GATEWAYS]
    assert [host for host, _, _ in published] == ["127.0.0.1"] * 2
    assert len({port for _, port, _ in published}) == 2
    assert {int(inner) for _, _, inner in published} == {a.port}


@pytest.mark.slow
def test_running_the_demo_again_keeps_the_events_stored_between_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env["HUNCH_HOME"] = str(tmp_path)
    # this checkout's code, whatever an editable install points at
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    def demo() -> str:
        run = subprocess.run(
            [sys.executable, "-m", "gateway", "demo", "--no-serve", "--users", "40",
             "--polls", "60", "--days", "2", "--seed", "5"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        return run.stdout

    started = time.time()
    demo()
    home = Settings(home=tmp_path)
    with EventStore(home.events_db) as store:
        poll = next(store.items())["ITEM_ID"]
        before = store.counts()
        # The demo's history ends now, so the votes the served app records continue it
        # (ending in 2024, the first live vote emptied Trending-Now's last intervals).
        newest = max(e.timestamp for e in store.interactions())
        assert started - 2 * 86_400 <= newest <= time.time()  # --days 2, up to now
        # acknowledged by the gateway while the first run served
        assert store.append(Interaction("late-voter", poll, "HUNCH", 1_800_000_000,
                                        event_id="acknowledged"))
        store.upsert_item({"ITEM_ID": poll, "QUESTION": "edited after the import"},
                          acting_user="moderator", admin=True)
    second = demo()
    with EventStore(home.events_db) as store:
        assert store.counts()["interactions"] == before["interactions"] + 1
        assert [e.event_id for e in store.interactions() if e.user_id == "late-voter"] == [
            "acknowledged"]
        assert store.get_item(poll)["QUESTION"] == "edited after the import"
    assert "not imported again" in second


def test_the_demo_loads_its_follows_into_neo4j_while_it_holds_none(tmp_path, monkeypatch):
    """helper-64: compose's init ran the demo on Neo4j and left the graph empty (it only
    printed a hint). The demo loads its follows while the graph holds none, by the graph's
    own count: a start after that loads nothing (it would undo users' unfollows), and a
    load that failed is tried again at the next start although the events are in
    (helper-65). The graph is an in-memory store with Neo4j's interface here, so that no
    demo data lands in the suite's shared Neo4j; `hunch graph load` itself runs against
    the real server in tests/graph."""
    from click.testing import CliRunner

    from gateway.cli import cli
    from graph.errors import GraphUnavailable
    from graph.memory_store import InMemoryGraphStore
    from graph.neo4j_store import Neo4jGraphStore

    graph = InMemoryGraphStore()
    down = [True]

    def from_env(*args, **kwargs):
        if down[0]:
            raise GraphUnavailable("Neo4j at bolt://neo4j:7687 is unreachable")
        return graph

    monkeypatch.setattr(Neo4jGraphStore, "from_env", staticmethod(from_env))
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    env = {"HUNCH_HOME": str(tmp_path), "HUNCH_GRAPH_STORE": "neo4j"}
    args = ["demo", "--no-serve", "--users", "40", "--polls", "60", "--days", "2"]
    first = CliRunner().invoke(cli, args, env=env)
    assert first.exit_code != 0  # Neo4j down: the events are in, the graph is not
    down[0] = False
    second = CliRunner().invoke(cli, args, env=env)
    assert second.exit_code == 0, second.output
    assert "not imported again" in second.output and " follows loaded" in second.output
    follows = asyncio.run(graph.counts())["follows"]
    with (tmp_path / "demo-data" / "follows.csv").open() as fh:
        assert follows == sum(1 for _ in fh) - 1 > 0
    third = CliRunner().invoke(cli, args, env=env)
    assert third.exit_code == 0, third.output
    assert "holds follows already; nothing loaded" in third.output
    assert asyncio.run(graph.counts())["follows"] == follows
