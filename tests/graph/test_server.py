"""The Neo4j server tooling as a developer meets it: `hunch neo4j status/start/stop`.

The running-server test uses the server the test command started
(scripts/neo4j-for-tests.sh); the others need no server and no build.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from neo4j import GraphDatabase

from gateway.cli import cli
from graph import server
from graph.errors import Neo4jServerError
from graph.server import Neo4jSettings
from tests.conftest import require_or_skip


def _settings(tmp_path: Path, port: int) -> Neo4jSettings:
    return Neo4jSettings(uri=f"bolt://127.0.0.1:{port}", home=tmp_path / "neo4j-home")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.neo4j
def test_status_reports_the_running_server_with_gds_and_apoc() -> None:
    settings = Neo4jSettings()
    found = server.status(settings)
    require_or_skip(found.running, f"no Neo4j at {settings.uri}; "
                                   "run `bash scripts/neo4j-for-tests.sh start`")
    result = CliRunner().invoke(cli, ["neo4j", "status"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("running")
    assert f"bolt://127.0.0.1:{found.port}" in result.output
    assert "GDS 2." in result.output and "APOC 5.26" in result.output


@pytest.mark.neo4j
def test_start_when_already_running_says_so_and_succeeds() -> None:
    found = server.status()
    require_or_skip(found.running and found.managed,
                    "no Neo4j started by `bash scripts/neo4j-for-tests.sh start`")
    result = CliRunner().invoke(cli, ["neo4j", "start"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Neo4j already running (pid {found.pid}")
    assert server.status().pid == found.pid  # no second server was spawned


def test_status_and_stop_when_nothing_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv("HUNCH_NEO4J_URI", f"bolt://127.0.0.1:{port}")
    monkeypatch.setenv("HUNCH_NEO4J_HOME", str(tmp_path / "neo4j-home"))
    status = CliRunner().invoke(cli, ["neo4j", "status"])
    assert status.exit_code == 0
    assert status.output.strip() == f"stopped (port {port})"
    stop = CliRunner().invoke(cli, ["neo4j", "stop"])
    assert stop.exit_code == 0
    assert "not running" in stop.output


def test_start_refuses_a_port_another_program_holds(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(Neo4jServerError, match=f"port {port} is already taken"):
            server.start(_settings(tmp_path, port))
    assert not (tmp_path / "neo4j-home" / "neo4j.pid").exists()


def test_a_stale_pid_file_does_not_count_as_running(tmp_path: Path) -> None:
    settings = _settings(tmp_path, _free_port())
    settings.home.mkdir(parents=True)
    # pid 1 is alive but is not our server: a reused pid must not fool status or stop.
    (settings.home / "neo4j.pid").write_text("1\n")
    assert server.status(settings).running is False
    assert server.stop(settings) == "Neo4j is not running"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HUNCH_TEST_NEO4J_LIFECYCLE") != "1",
                    reason="starts its own Neo4j twice (~1.5 min on 2 busy cores); set HUNCH_TEST_NEO4J_LIFECYCLE=1")
def test_start_stop_restart_keeps_data_and_the_first_password(tmp_path: Path) -> None:
    settings = _settings(tmp_path, _free_port())
    uri = f"bolt://127.0.0.1:{settings.port}"
    try:
        assert server.start(settings).startswith("Neo4j running")
        with GraphDatabase.driver(uri, auth=(settings.user, settings.password)) as driver:
            driver.execute_query("CREATE (:User {id: 'kept'})")
        assert server.stop(settings).startswith("Neo4j stopped")
        assert server.status(settings).running is False

        # The stored password wins over a new one in the environment.
        changed = settings.model_copy(update={"password": "another-password"})
        with pytest.raises(Neo4jServerError, match="refused HUNCH_NEO4J_PASSWORD"):
            server.start(changed)
        with GraphDatabase.driver(uri, auth=(settings.user, settings.password)) as driver:
            records = driver.execute_query("MATCH (u:User) RETURN u.id AS id").records
        assert [r["id"] for r in records] == ["kept"]
    finally:
        server.stop(settings)


def test_cpu_seconds_of_the_managed_server_and_of_none(tmp_path: Path) -> None:
    # What bench/bench_graph.py reports beside wall time; a stand-in process carries the
    # server's main class on its command line, as the real one does.
    import subprocess
    import sys
    import time

    settings = _settings(tmp_path, _free_port())
    assert server.cpu_seconds(settings) is None  # no pid file: nothing of ours runs
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass", server.MAIN_CLASS])
    try:
        settings.home.mkdir(parents=True)
        (settings.home / "neo4j.pid").write_text(f"{busy.pid}\n")
        # Until the child has exec'd, its command line is still the parent's and the pid
        # is rightly not taken for the server's (CI hit that window once): wait for it.
        cmdline = Path(f"/proc/{busy.pid}/cmdline")
        deadline = time.monotonic() + 30
        while server.MAIN_CLASS.encode() not in cmdline.read_bytes() \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        first = server.cpu_seconds(settings)
        assert first is not None
        # Spins until the kernel has counted a tick more (at once on an idle core, later
        # on a busy machine; the deadline only stops a broken count from hanging).
        deadline = time.monotonic() + 30
        while server.cpu_seconds(settings) <= first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.cpu_seconds(settings) > first
    finally:
        busy.kill()
        busy.wait()
    assert server.cpu_seconds(settings) is None  # gone, and no pid reuse mistaken for it
