"""Build, start, stop and inspect a local Neo4j 5.26 (with GDS and APOC) without Docker.

The server is the small Maven project in ``graph/neo4j_server``: a Java main that runs a
persistent embedded DBMS with Bolt on 127.0.0.1. Maven fetches the jars from Maven
Central on the first build (~150 MB, a couple of minutes); later builds are skipped
until pom.xml or the Java source changes. The server runs in the background with its
pid, port and log under ``HUNCH_NEO4J_HOME`` (default ``.neo4j``), so ``start`` and
``stop`` work from separate shells. ``python -m graph.server start|stop|status`` and
``hunch neo4j ...`` both call the functions here.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic_settings import BaseSettings, SettingsConfigDict

from graph.errors import Neo4jServerError

SERVER_PROJECT = Path(__file__).resolve().parent / "neo4j_server"
TARGET = SERVER_PROJECT / "target"  # Maven's output; gitignored
MAIN_CLASS = "dev.hunch.neo4j.HunchNeo4jServer"
# Neo4j's off-heap page cache and netty reach into JDK internals that Java 17 closes.
JVM_FLAGS = (
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    # Throughput collector: G1, the default, shrank the young generation to ~130 MB to
    # meet its pause goal, so a bulk load's transaction state was copied through a young
    # collection every ~0.7 s (200k follows: 14 collections, 2.4 s of pauses; with this
    # flag 4-5 and ~0.6 s, measured here). A dev/test server wants throughput, not short
    # pauses; a production Neo4j is configured by its own neo4j.conf, not by this.
    "-XX:+UseParallelGC",
)
DEFAULT_BOLT_PORT = 7687
# Seen here: 9-25 s from java to Bolt ready on 2 busy cores; a first start also creates
# the stores. Three minutes says "something is wrong" without cutting a slow machine off.
START_TIMEOUT_S = 180.0
# Shutdown closes Bolt (a 5 s grace for clients) and checkpoints the store: ~12 s here.
STOP_TIMEOUT_S = 90.0
# A first build downloads ~150 MB from Maven Central.
BUILD_TIMEOUT_S = 900.0
_POLL_S = 0.5
_READY_MARK = "HUNCH_NEO4J_READY"


class Neo4jSettings(BaseSettings):
    """Where the graph server is and how to reach it (``HUNCH_NEO4J_*``).

    Kept here, not in gateway/settings.py, because ``graph`` may not import ``gateway``.
    """

    model_config = SettingsConfigDict(env_prefix="HUNCH_NEO4J_", extra="ignore")

    uri: str = f"bolt://127.0.0.1:{DEFAULT_BOLT_PORT}"
    user: str = "neo4j"
    # A development default; Neo4j 5 refuses passwords shorter than 8 characters.
    password: str = "hunch-dev-password"
    # Holds data/, the pid and state files and the server's log.
    home: Path = Path(".neo4j")
    # JVM heap (-Xmx): GDS projections live here. 1g fits 100k users / 2M follows.
    heap: str = "1g"
    # Neo4j's page cache (store files kept in memory), off-heap.
    pagecache: str = "512m"

    @property
    def port(self) -> int:
        return urlparse(self.uri).port or DEFAULT_BOLT_PORT


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    port: int
    managed: bool  # started by this tooling (a pid file in HUNCH_NEO4J_HOME)
    gds_version: str | None = None
    apoc_version: str | None = None
    problem: str | None = None  # e.g. the server refused the configured password

    def describe(self) -> str:
        if not self.running:
            return f"stopped (port {self.port})"
        who = f"pid {self.pid}" if self.managed else "not started by hunch, no pid file"
        line = f"running ({who}, bolt://127.0.0.1:{self.port})"
        if self.problem:
            return f"{line}; {self.problem}"
        gds = f"GDS {self.gds_version}" if self.gds_version else "GDS missing"
        apoc = f"APOC {self.apoc_version}" if self.apoc_version else "APOC missing"
        return f"{line}; {gds}; {apoc}"


# -- build ----------------------------------------------------------------------------

def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted([SERVER_PROJECT / "pom.xml", *SERVER_PROJECT.glob("src/**/*.java")]):
        digest.update(path.relative_to(SERVER_PROJECT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamp() -> Path:
    return TARGET / ".hunch-build-stamp"


def is_built() -> bool:
    stamp = _stamp()
    return stamp.exists() and stamp.read_text().strip() == _source_digest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two shells (or two test sessions) starting at once must not build or spawn twice.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(force: bool = False) -> bool:
    """Compile the launcher and lay out its jars with Maven; returns False if up to date."""
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            raise Neo4jServerError(
                f"`{tool}` is not on PATH: install Java 17 and Maven 3.8+ to run Neo4j "
                "without Docker (or use docker-compose.yml)"
            )
    with _locked(TARGET / ".build.lock"):
        if is_built() and not force:
            return False
        log = TARGET / "build.log"
        with open(log, "w") as out:
            try:
                done = subprocess.run(["mvn", "-q", "-B", "package"], cwd=SERVER_PROJECT,
                                      stdout=out, stderr=subprocess.STDOUT,
                                      timeout=BUILD_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired as exc:
                raise Neo4jServerError(
                    f"Maven build took over {BUILD_TIMEOUT_S:.0f} s; see {log}") from exc
        if done.returncode != 0:
            raise Neo4jServerError(
                f"Maven build of {SERVER_PROJECT} failed (exit {done.returncode}); see {log}")
        _stamp().write_text(_source_digest() + "\n")
        return True


# -- process bookkeeping --------------------------------------------------------------

def _pid_file(settings: Neo4jSettings) -> Path:
    return settings.home / "neo4j.pid"


def _state_file(settings: Neo4jSettings) -> Path:
    return settings.home / "neo4j.json"


def log_file(settings: Neo4jSettings) -> Path:
    return settings.home / "neo4j.log"


def _is_our_server(pid: int) -> bool:
    """Alive, not a zombie, and running our main class (a pid may be reused)."""
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            # The state is the field after the parenthesised command name.
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            return False
        return state != "Z" and MAIN_CLASS in cmdline
    try:  # no /proc (macOS): fall back to "some process has this pid"
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    # When this Python process started the server, collect its exit so it is no zombie.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _running_pid(settings: Neo4jSettings) -> int | None:
    try:
        pid = int(_pid_file(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    _reap(pid)
    return pid if _is_our_server(pid) else None


def _state(settings: Neo4jSettings) -> dict:
    try:
        return json.loads(_state_file(settings).read_text())
    except (OSError, ValueError):
        return {}


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _last_error_line(log: Path, offset: int) -> str:
    try:
        with open(log, errors="replace") as handle:
            handle.seek(offset)
            lines = [line.strip() for line in handle if line.strip()]
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith(("Caused by:", "hunch-neo4j:", "Exception", "Error")):
            return line[:300]
    return lines[-1][:300] if lines else ""


# -- start / stop / status ------------------------------------------------------------

def start(settings: Neo4jSettings | None = None, *, port: int | None = None,
          data_dir: Path | None = None, heap: str | None = None,
          pagecache: str | None = None, wait: bool = True,
          timeout: float = START_TIMEOUT_S) -> str:
    """Start the server in the background; returns a one-line message. Idempotent."""
    settings = settings or Neo4jSettings()
    port = port or settings.port
    data_dir = (data_dir or settings.home / "data").resolve()
    with _locked(settings.home / ".start.lock"):
        pid = _running_pid(settings)
        if pid is not None:
            running_port = _state(settings).get("port", port)
            return f"Neo4j already running (pid {pid}, bolt://127.0.0.1:{running_port})"
        if _port_open(port):
            raise Neo4jServerError(
                f"port {port} is already taken by another process (not the Neo4j of "
                f"{settings.home}); stop it or choose another --port")
        build()
        log = log_file(settings)
        log.parent.mkdir(parents=True, exist_ok=True)
        offset = log.stat().st_size if log.exists() else 0
        classpath = os.pathsep.join(
            [str(TARGET / "classes"), str(TARGET / "lib" / "*"), str(TARGET / "plugins" / "*")])
        command = ["java", f"-Xmx{heap or settings.heap}", *JVM_FLAGS, "-cp", classpath,
                   MAIN_CLASS, "--port", str(port), "--data-dir", str(data_dir),
                   "--plugins-dir", str(TARGET / "plugins"),
                   "--pagecache", pagecache or settings.pagecache]
        # The password travels in the environment, never on a command line `ps` shows.
        env = {**os.environ, "HUNCH_NEO4J_PASSWORD": settings.password}
        with open(log, "a") as out:
            out.write(f"\n--- hunch neo4j start {time.strftime('%Y-%m-%d %H:%M:%S')} "
                      f"port {port} data {data_dir}\n")
            out.flush()
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env,
                                       start_new_session=True)  # survives our Ctrl-C
        _pid_file(settings).write_text(f"{process.pid}\n")
        _state_file(settings).write_text(json.dumps(
            {"pid": process.pid, "port": port, "data_dir": str(data_dir)}))
    if not wait:
        return f"Neo4j starting (pid {process.pid}, bolt://127.0.0.1:{port}); log {log}"
    _wait_ready(settings, process, port, log, offset, timeout)
    return f"Neo4j running (pid {process.pid}, bolt://127.0.0.1:{port}); log {log}"


def _wait_ready(settings: Neo4jSettings, process: subprocess.Popen, port: int, log: Path,
                offset: int, timeout: float) -> None:
    from neo4j import GraphDatabase
    from neo4j.exceptions import AuthError, ServiceUnavailable

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            _pid_file(settings).unlink(missing_ok=True)
            raise Neo4jServerError(
                f"Neo4j exited during start (code {code}): "
                f"{_last_error_line(log, offset)} -- see {log}")
        with open(log, errors="replace") as handle:
            handle.seek(offset)
            ready = _READY_MARK in handle.read()
        if ready:
            uri = f"bolt://127.0.0.1:{port}"
            try:
                with GraphDatabase.driver(uri, auth=(settings.user, settings.password)) as driver:
                    driver.execute_query("RETURN 1")
                return
            except AuthError as exc:
                raise Neo4jServerError(
                    f"Neo4j is running (pid {process.pid}) but refused HUNCH_NEO4J_PASSWORD: "
                    f"its data dir keeps the password of its first start; use that one, or "
                    f"stop it and delete {_state(settings).get('data_dir')}") from exc
            except ServiceUnavailable:
                pass
        time.sleep(_POLL_S)
    raise Neo4jServerError(
        f"Neo4j (pid {process.pid}) did not answer on port {port} within {timeout:.0f} s; "
        f"it is still starting or stuck -- see {log}, then `hunch neo4j stop`")


def stop(settings: Neo4jSettings | None = None, timeout: float = STOP_TIMEOUT_S) -> str:
    """SIGTERM the server (a clean shutdown) and wait for it to exit."""
    settings = settings or Neo4jSettings()
    pid = _running_pid(settings)
    if pid is None:
        _pid_file(settings).unlink(missing_ok=True)
        return "Neo4j is not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _is_our_server(pid):
            _pid_file(settings).unlink(missing_ok=True)
            return f"Neo4j stopped (pid {pid})"
        time.sleep(_POLL_S)
    raise Neo4jServerError(
        f"Neo4j (pid {pid}) still running {timeout:.0f} s after SIGTERM; see "
        f"{log_file(settings)}; `kill -9 {pid}` forces it (the store recovers on next start)")


def status(settings: Neo4jSettings | None = None) -> ServerStatus:
    """Whether the server runs, and whether GDS and APOC procedures answer."""
    settings = settings or Neo4jSettings()
    pid = _running_pid(settings)
    port = _state(settings).get("port", settings.port) if pid else settings.port
    if pid is None and not _port_open(port):
        return ServerStatus(running=False, pid=None, port=port, managed=False)
    from neo4j import GraphDatabase
    from neo4j.exceptions import AuthError, ClientError, ServiceUnavailable

    uri = f"bolt://127.0.0.1:{port}" if pid else settings.uri
    versions: dict[str, str | None] = {}
    try:
        with GraphDatabase.driver(uri, auth=(settings.user, settings.password)) as driver:
            for name, query in (("gds", "RETURN gds.version() AS v"),
                                ("apoc", "RETURN apoc.version() AS v")):
                try:
                    versions[name] = driver.execute_query(query).records[0]["v"]
                except AuthError:
                    raise
                except ClientError:  # unknown function: plugin absent
                    versions[name] = None
    except AuthError:
        return ServerStatus(True, pid, port, pid is not None,
                            problem="it refused HUNCH_NEO4J_USER/HUNCH_NEO4J_PASSWORD")
    except ServiceUnavailable:
        return ServerStatus(True, pid, port, pid is not None,
                            problem=f"Bolt does not answer yet; see {log_file(settings)}")
    return ServerStatus(True, pid, port, pid is not None,
                        gds_version=versions["gds"], apoc_version=versions["apoc"])


def cpu_seconds(settings: Neo4jSettings | None = None) -> float | None:
    """CPU time (user + system) the managed server has used so far, or None when it is
    not ours or there is no /proc. Benchmarks on a shared machine diff it around a step:
    unlike wall time, it does not grow when other processes take the cores."""
    settings = settings or Neo4jSettings()
    pid = _running_pid(settings)
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # utime and stime, the 14th and 15th fields of stat (12th and 13th after the name).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graph.server",
                                     description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="build if needed, start, wait for Bolt")
    begin.add_argument("--port", type=int)
    begin.add_argument("--data-dir", type=Path)
    begin.add_argument("--heap")
    begin.add_argument("--no-wait", action="store_true")
    commands.add_parser("stop", help="SIGTERM and wait")
    commands.add_parser("status", help="running or stopped; GDS/APOC present")
    commands.add_parser("build", help="run the Maven build if sources changed")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            print(start(port=args.port, data_dir=args.data_dir, heap=args.heap,
                        wait=not args.no_wait))
        elif args.command == "stop":
            print(stop())
        elif args.command == "build":
            print("built" if build() else "up to date")
        else:
            print(status().describe())
    except Neo4jServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
