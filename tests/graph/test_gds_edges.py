"""`hunch graph cluster --store neo4j` on graphs with nothing to cluster says what the
Python path says (helper-75). Runs after test_gds.py: it empties the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from graph.analytics import ClusterOptions, EmptyFollowGraph, NO_FOLLOWS
from graph.gds import analyze_in_gds, neo4j_settings, open_driver
from graph.neo4j_store import Neo4jGraphStore
from graph.store import Follow
from tests.conftest import require_or_skip

pytestmark = pytest.mark.neo4j


@pytest.fixture
def driver():
    settings = neo4j_settings()
    try:
        drv = open_driver(settings.uri, settings.user, settings.password)
        version = drv.execute_query("RETURN gds.version() AS v").records[0]["v"]
    except Exception as exc:  # noqa: BLE001 - the reason is the skip's message
        require_or_skip(False, f"GDS path needs Neo4j with GDS: {exc}")
    assert version
    drv.execute_query("MATCH (n) DETACH DELETE n")
    try:
        yield drv
    finally:
        drv.execute_query("MATCH (n) DETACH DELETE n")
        drv.close()


def _load(follows: list[tuple[str, str]], users: list[str] = ()) -> None:
    async def go():
        store = Neo4jGraphStore.from_env()
        try:
            await store.ensure_schema()
            await store.upsert_users(users)
            await store.upsert_follows(Follow(a, b, 1) for a, b in follows)
        finally:
            await store.close()

    asyncio.run(go())


def test_an_empty_or_followless_graph_is_empty_not_a_failed_procedure(driver, tmp_path: Path
                                                                      ) -> None:
    # Was: "a GDS procedure failed: ... Expecting at least one node projection to contain
    # property key".
    with pytest.raises(EmptyFollowGraph, match="holds no follows"):
        analyze_in_gds(driver, ClusterOptions())
    _load([], users=[f"i{k}" for k in range(20)])
    with pytest.raises(EmptyFollowGraph) as refused:
        analyze_in_gds(driver, ClusterOptions())
    assert str(refused.value) == NO_FOLLOWS
    result = CliRunner().invoke(cli, ["graph", "cluster", "--store", "neo4j", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2 and "holds no follows" in result.stderr, result.output


def test_follows_in_groups_too_small_say_so_rather_than_load_follows(driver) -> None:
    # Was: "only 0 users sit in connected groups of >= 5: load follows first", to a user
    # who had just loaded them.
    _load([(f"p{k}", f"q{k}") for k in range(30)])
    with pytest.raises(EmptyFollowGraph, match="no connected group of >= 5 users among the 60"):
        analyze_in_gds(driver, ClusterOptions())
    _load([(f"c{a}", f"c{b}") for a in range(6) for b in range(6) if a != b])
    with pytest.raises(EmptyFollowGraph, match="only 6 users .* k=7 needs more"):
        analyze_in_gds(driver, ClusterOptions(k=7))
