"""Shared fixtures. Tests that need Neo4j fail (never skip) when CI=true."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_or_skip(available: bool, why: str) -> None:
    """Skip a test whose server is missing, except in CI where that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{why} (CI=true: required, not skipped)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL for the whole session (scripts/test.sh installs it with apt)."""
    from tests.servers import PostgresServer, postgres_bin_dir

    bin_dir = postgres_bin_dir()
    require_or_skip(bin_dir is not None,
                    "PostgreSQL is not installed (scripts/test.sh installs it with apt)")
    server = PostgresServer(bin_dir).init()
    yield server
    server.destroy()


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh, empty database per test: tests never see each other's rows."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    name = f"t_{name}_{uuid.uuid4().hex[:8]}"
    yield postgres_server.create_database(name)
    # Dropped after the test: a kept database's pages wait in shared buffers for the
    # shutdown checkpoint, which took over 30 s on a busy disk after a few dozen tests.
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real Redis for the whole session (scripts/test.sh installs it with apt)."""
    import shutil

    from tests.servers import RedisServer

    binary = shutil.which("redis-server")
    require_or_skip(binary is not None, "redis-server is not installed (scripts/test.sh installs it)")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    yield server
    server.destroy()


# --- the tree under test must not change during the run (tests/source_changes.py) -----

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SOURCES_AT_START = pytest.StashKey[dict]()


def pytest_sessionstart(session):
    from pathlib import Path

    from tests.source_changes import source_stamps

    session.config.stash[_SOURCES_AT_START] = source_stamps(Path(_ROOT))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from pathlib import Path

    from tests.source_changes import changed_sources, source_stamps

    before = config.stash.get(_SOURCES_AT_START, None)
    if before is None:
        return
    changed = changed_sources(before, source_stamps(Path(_ROOT)))
    if not changed:
        return
    terminalreporter.section("source files changed during this run", yellow=True)
    terminalreporter.write_line(
        "These files were edited, committed or checked out while the tests ran; modules "
        "imported before and after the change are different versions, so a failure here "
        "(an ImportError or AttributeError above all) may be the mix, not the code. Run "
        "again on a tree nobody changes (another clone or a git worktree):")
    for path in changed[:20]:
        terminalreporter.write_line(f"  {path}")
    if len(changed) > 20:
        terminalreporter.write_line(f"  ... and {len(changed) - 20} more")
