"""``hunch graph export-follows``: the live follower graph as follows.csv (helper-64: the
only follows.csv an operator had was the one first loaded, and `hunch graph load` of it
brought back every follow users had undone since)."""

from __future__ import annotations

import asyncio
import csv
import uuid
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import cli
from graph.errors import GraphUnavailable
from graph.follow_journal import FollowJournal
from graph.gds import open_driver
from graph.neo4j_store import Neo4jGraphStore
from graph.server import Neo4jSettings
from tests.conftest import require_or_skip

HEADER = ["FOLLOWER_ID", "FOLLOWEE_ID", "TIMESTAMP"]


def _write(path: Path, rows: list[tuple]) -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([HEADER, *rows])
    return path


def _rows(path: Path) -> list[tuple[str, str, int]]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        assert next(reader) == HEADER
        return [(a, b, int(t)) for a, b, t in reader]


def test_the_memory_graph_is_its_file_with_the_journal_applied(tmp_path):
    base = _write(tmp_path / "follows.csv", [("u1", "u2", 1_700_000_010),
                                             ("u1", "u3", 1_700_000_011)])
    journal = FollowJournal(tmp_path / "follows-journal.sqlite3")
    journal.record("u1", "u2", False, 1_700_000_020)  # undone through the API
    journal.record("u4", "u1", True, 1_700_000_021)  # made through the API
    journal.close()
    out = tmp_path / "live.csv"
    result = CliRunner().invoke(cli, ["graph", "export-follows", "--out", str(out),
                                      "--store", "memory"],
                                env={"HUNCH_HOME": str(tmp_path),
                                     "HUNCH_FOLLOWS_PATH": str(base)})
    assert result.exit_code == 0, result.output
    assert _rows(out) == [("u1", "u3", 1_700_000_011), ("u4", "u1", 1_700_000_021)]
    assert "wrote 2 follows" in result.output


def test_neo4j_exports_what_the_server_holds_after_an_unfollow(tmp_path):
    settings = Neo4jSettings()
    try:
        open_driver(settings.uri, settings.user, settings.password).close()
    except GraphUnavailable as exc:
        require_or_skip(False, f"no Neo4j for export-follows: {exc}")
    run = f"xf{uuid.uuid4().hex[:8]}-"  # this run's namespace in the shared database
    follows = _write(tmp_path / "follows.csv", [(f"{run}a", f"{run}b", 1_700_000_001),
                                                (f"{run}a", f"{run}c", 1_700_000_002),
                                                (f"{run}c", f"{run}a", 1_700_000_003)])
    loaded = CliRunner().invoke(cli, ["graph", "load", "--follows", str(follows)])
    assert loaded.exit_code == 0, loaded.output

    async def unfollow_and_clean(clean: bool) -> None:
        store = Neo4jGraphStore.from_env()
        try:
            if clean:
                for a, b in (("a", "c"), ("c", "a")):
                    await store.unfollow(f"{run}{a}", f"{run}{b}")
            else:
                assert await store.unfollow(f"{run}a", f"{run}b")
        finally:
            await store.close()

    asyncio.run(unfollow_and_clean(False))
    out = tmp_path / "live.csv"
    try:
        result = CliRunner().invoke(cli, ["graph", "export-follows", "--out", str(out),
                                          "--store", "neo4j"])
        assert result.exit_code == 0, result.output
        mine = [r for r in _rows(out) if r[0].startswith(run)]
        assert mine == [(f"{run}a", f"{run}c", 1_700_000_002),
                        (f"{run}c", f"{run}a", 1_700_000_003)]
    finally:
        asyncio.run(unfollow_and_clean(True))


def test_an_export_that_fails_midway_leaves_the_file_it_replaces(tmp_path, monkeypatch):
    """helper-75: `--out $HUNCH_FOLLOWS_PATH` (the file workers build their graph from)
    truncated it first: a full disk or a Ctrl-C midway lost every follow it held."""
    base = _write(tmp_path / "follows.csv", [("u1", "u2", 1_700_000_010),
                                             ("u1", "u3", 1_700_000_011)])
    before = base.read_bytes()
    journal = FollowJournal(tmp_path / "follows-journal.sqlite3")
    journal.record("u4", "u1", True, 1_700_000_021)
    journal.close()

    # The rows written fail after the first, as a full disk fails a write.
    class Exploding(list):
        def __iter__(self):
            yield ("u1", "u3", 1_700_000_011)
            raise OSError(28, "No space left on device")

    import gateway.cli.graph as graph_cli
    monkeypatch.setattr(graph_cli, "sorted", lambda rows: Exploding(rows), raising=False)
    result = CliRunner().invoke(cli, ["graph", "export-follows", "--out", str(base),
                                      "--store", "memory"],
                                env={"HUNCH_HOME": str(tmp_path),
                                     "HUNCH_FOLLOWS_PATH": str(base)})
    assert result.exit_code != 0
    assert base.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".follows")] == []
