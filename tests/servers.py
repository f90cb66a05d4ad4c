"""Real throwaway servers for tests: PostgreSQL and Redis, bound to 127.0.0.1.

Each server lives in its own temporary directory on a free port and is removed when the
test session ends. ``scripts/test.sh`` installs the binaries with apt when missing; a test
that needs one calls ``require_or_skip`` so CI fails instead of skipping.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Debian installs the server binaries outside PATH, one directory per major version.
_POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_START_TIMEOUT_SECONDS = 30
_START_ATTEMPTS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None when not installed."""
    found = sorted(glob.glob(_POSTGRES_BIN_GLOB), key=lambda p: int(Path(p).parent.name))
    if found:
        return Path(found[-1])
    on_path = shutil.which("initdb")  # other distributions put the binaries on PATH
    return Path(on_path).parent if on_path else None


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, trust auth on 127.0.0.1 only.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres``
    user the Debian package creates. ``stop``/``start`` keep the data (for restart tests);
    ``kill`` is a crash (SIGKILL of the postmaster).
    """

    def __init__(self, bin_dir: Path, database: str = "hunch"):
        self.bin_dir = bin_dir
        self.database = database
        self.port = free_port()
        # Not under pytest's tmp dirs: those are 0700 root and the server runs as postgres.
        self.workdir = Path(tempfile.mkdtemp(prefix="hunch-pg-"))
        self.data = self.workdir / "data"
        self._as_postgres = os.geteuid() == 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)

    def init(self) -> "PostgresServer":
        if self._as_postgres:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8")
        return self.start()._create_database()

    def start(self) -> "PostgresServer":
        cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
               "-h", "127.0.0.1", "-k", str(self.workdir), "-c", "max_connections=200",
               "-c", "logging_collector=off"]
        # The postmaster is our own child (no runuser in between) so that a crash test's
        # SIGKILL hits it and wait() reaps it: a container's PID 1 may never reap an orphan,
        # and a zombie postmaster's pid in postmaster.pid blocks the restart.
        user = "postgres" if self._as_postgres else None
        for _ in range(_START_ATTEMPTS):
            with open(self.workdir / "server.log", "ab") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, user=user,
                                             start_new_session=True)
            try:
                self._wait_ready()
                return self
            except RuntimeError:
                # After a crash, backends of the killed server may still hold its shared
                # memory for a moment; the new postmaster refuses until they have exited.
                if self.proc.poll() is None:
                    raise
                time.sleep(0.5)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            ready = subprocess.run([str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1",
                                    "-p", str(self.port), "-U", "postgres", "-q"])
            if ready.returncode == 0:
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        log = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{log}")

    def _create_database(self) -> "PostgresServer":
        self._run(str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", self.database)
        return self

    def create_database(self, name: str) -> str:
        """A fresh, empty database on this server; returns its URL (one per test module)."""
        self._run(str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def drop_database(self, name: str) -> None:
        """Drop a test's database, ending its connections (a no-op while stopped)."""
        if self.proc is None:
            return
        self._run(str(self.bin_dir / "dropdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", "--force", "--if-exists", name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, committed data is kept."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=_START_TIMEOUT_SECONDS)
        self.proc = None

    def kill(self) -> None:
        """A crash: SIGKILL the postmaster (its backends notice and exit on their own)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=_START_TIMEOUT_SECONDS)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class RedisServer:
    """One Redis without persistence in a temporary directory."""

    def __init__(self, binary: str, workdir: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def destroy(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
