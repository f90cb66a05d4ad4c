"""Shared pieces of the end-to-end tests: a small trained demo engine (module-scoped
home) and a uvicorn server in a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.auth import issue_token
from gateway.settings import Settings
from tests.conftest import require_or_skip

# The JavaScript clients apps use (Apollo, Relay, urql), pinned by one package.json and
# lock file, and the scripts that drive them against a real server.
CLIENTS_DIR = Path(__file__).parent / "clients"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    """A small demo engine: generated data, imported, three recipes trained."""
    home = tmp_path_factory.mktemp("hunch-home")
    data = home / "data"
    env = {**os.environ, "HUNCH_HOME": str(home)}
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "gateway", *args], env=env, check=True,
        capture_output=True, text=True, timeout=300)
    run("data", "generate", "--users", "150", "--polls", "300", "--days", "5", "--seed", "3",
        str(data))
    run("data", "import", str(data))
    for recipe in ("popularity-count", "trending-now", "user-personalization"):
        run("train", "--recipe", recipe, "--data", str(data))
    return home


class Server:
    def __init__(self, home: Path, workers: int = 1, **env_extra: str):
        self.home = home
        self.port = _free_port()
        self.env = {**os.environ, "HUNCH_HOME": str(home), "HUNCH_PORT": str(self.port),
                    **env_extra}
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        # The log goes to a file, not a pipe nobody reads: a server that logs more than
        # the pipe holds (a store outage's warnings) would block on its next log line.
        self.log = self.home / f"server-{self.port}.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--workers", str(self.workers)],
                env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start in 60 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gql(self, query: str, variables: dict | None = None, token: str | None = None,
            **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}},
                          headers=headers, timeout=30, **kw)

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(home):
    srv = Server(home).start()
    yield srv
    srv.stop()


def token(user: str, admin: bool = False) -> str:
    return issue_token(Settings(), user, admin=admin)


def _user(home: Path) -> str:
    import csv

    with (home / "data" / "users.csv").open() as fh:
        return next(csv.DictReader(fh))["USER_ID"]




@pytest.fixture(scope="module")
def node() -> str:
    """The Node binary, with the pinned clients installed (``npm ci``, which uses npm's
    offline cache when it can)."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    require_or_skip(node_bin is not None and npm_bin is not None,
                    "node and npm are needed for the JavaScript client checks")
    installed = CLIENTS_DIR / "node_modules" / ".package-lock.json"  # written by npm ci
    lock = CLIENTS_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run([npm_bin, "ci", "--prefer-offline", "--no-audit", "--no-fund"],
                              cwd=CLIENTS_DIR, capture_output=True, text=True, timeout=600)
        require_or_skip(done.returncode == 0,
                        f"npm ci in {CLIENTS_DIR} failed: {done.stderr[-2000:]}")
    return node_bin
