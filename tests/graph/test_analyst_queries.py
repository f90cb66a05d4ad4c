"""The analysts' Cypher queries (graph/cypher/) against a real Neo4j, on a small planted
graph whose answers are known by hand: the hub of a cluster, the pair of communities that
follow each other, the poll a community engages with most.

The graph goes in through ``hunch graph load`` (so the loader is tested too) and labels
through the store. Every id carries a per-run prefix and nothing else in the database is
touched, because other suites share the test server: queries are filtered to the planted
communities, and the planted nodes are deleted afterwards.

Planted (communities A, B, C; clusters cA, cB, cC match them):
  follows inside A: a2,a3,a4,a5 -> a1; a3,a4,a1 -> a2; a5 -> a4     (8)
  A -> B: a1,a2 -> b1 (2)          B -> A: b1..b4 -> a5 (4)
  inside B: b2,b3,b4 -> b1 (3)     B -> C: b1 -> c1 (1)
  C -> A: c1,c2 -> a5, c1,c2,c3 -> a1 (5)   C -> B: c3 -> b2 (1)   inside C: c1<->c2 (2)
  polls: pa by a1, pb by b1, pc by c1
  engaged: pb by a2,a3,a4 (HUNCH, t=1000) and a2 (COMMENT, t=1010); pa by a5 and
  b1..b4 (HUNCH, t=2000); pc by a1..a5 (HUNCH, t=5000)
"""

from __future__ import annotations

import asyncio
import csv
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from neo4j import Driver

from gateway.cli import cli
from graph.analyst_queries import (
    InvalidQueryParameter,
    MalformedQueryFile,
    UnknownAnalystQuery,
    load_query,
    parse_query,
    query_names,
    run_query,
)
from graph.errors import GraphUnavailable
from graph.gds import open_driver
from graph.neo4j_store import Neo4jGraphStore
from graph.server import Neo4jSettings
from graph.store import Labels
from tests.conftest import require_or_skip

RUN = f"aq{uuid.uuid4().hex[:8]}-"  # this run's namespace in the shared test database
A, B, C = f"{RUN}A", f"{RUN}B", f"{RUN}C"

FOLLOWS = [
    ("a2", "a1"), ("a3", "a1"), ("a4", "a1"), ("a5", "a1"), ("a3", "a2"), ("a4", "a2"),
    ("a1", "a2"), ("a5", "a4"),
    ("a1", "b1"), ("a2", "b1"),
    ("b1", "a5"), ("b2", "a5"), ("b3", "a5"), ("b4", "a5"),
    ("b2", "b1"), ("b3", "b1"), ("b4", "b1"), ("b1", "c1"),
    ("c1", "a5"), ("c2", "a5"), ("c1", "a1"), ("c2", "a1"), ("c3", "a1"), ("c3", "b2"),
    ("c1", "c2"), ("c2", "c1"),
]
ITEMS = [("pa", "a1", 100), ("pb", "b1", 100), ("pc", "c1", 100)]
ENGAGED = (
    [(u, "pb", 1000, "HUNCH") for u in ("a2", "a3", "a4")] + [("a2", "pb", 1010, "COMMENT")]
    + [(u, "pa", 2000, "HUNCH") for u in ("a5", "b1", "b2", "b3", "b4")]
    + [(u, "pc", 5000, "HUNCH") for u in ("a1", "a2", "a3", "a4", "a5")]
)


def ns(local_id: str) -> str:
    return RUN + local_id


def _write_csv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _delete_planted(driver: Driver) -> None:
    driver.execute_query(
        "MATCH (n) WHERE (n:User OR n:Poll) AND n.id STARTS WITH $run DETACH DELETE n",
        run=RUN)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    """A driver on the test server holding the planted graph."""
    settings = Neo4jSettings()
    try:
        driver = open_driver(settings.uri, settings.user, settings.password)
    except GraphUnavailable as exc:
        require_or_skip(False, f"no Neo4j for the analyst queries: {exc}")
    folder = tmp_path_factory.mktemp("planted")
    files = {
        "follows": _write_csv(folder / "follows.csv", ["FOLLOWER_ID", "FOLLOWEE_ID", "TIMESTAMP"],
                              [(ns(a), ns(b), 1) for a, b in FOLLOWS]),
        "items": _write_csv(folder / "items.csv", ["ITEM_ID", "AUTHOR_ID", "CREATION_TIMESTAMP"],
                            [(ns(p), ns(a), t) for p, a, t in ITEMS]),
        "interactions": _write_csv(
            folder / "interactions.csv", ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"],
            [(ns(u), ns(p), t, kind) for u, p, t, kind in ENGAGED]),
    }
    try:
        args = ["graph", "load"] + [f"--{k}={v}" for k, v in files.items()]
        loaded = CliRunner().invoke(cli, args)
        assert loaded.exit_code == 0, loaded.output
        assert "3 polls, 26 follows, 14 engagements loaded" in loaded.output
        # Loading again is an upsert: nothing doubles.
        again = CliRunner().invoke(cli, args)
        assert again.exit_code == 0, again.output
        asyncio.run(_label_planted(settings))
        yield driver
    finally:
        _delete_planted(driver)
        driver.close()


async def _label_planted(settings: Neo4jSettings) -> None:
    users = {u for pair in FOLLOWS for u in pair} | {u for u, *_ in ENGAGED}
    store = Neo4jGraphStore(settings.uri, settings.user, settings.password)
    try:
        await store.set_labels({ns(u): Labels(cluster=f"{RUN}c{u[0].upper()}",
                                              community=f"{RUN}{u[0].upper()}") for u in users})
    finally:
        await store.close()


def _mine(rows: list[dict], *columns: str) -> list[dict]:
    """Rows whose named columns all belong to this run (other suites share the server)."""
    return [r for r in rows if all(str(r[c]).startswith(RUN) for c in columns)]


# -- the three questions of the issue --------------------------------------------------

@pytest.mark.neo4j
def test_hubs_of_a_cluster_count_followers_from_inside_the_cluster(planted: Driver) -> None:
    rows = run_query(planted, "cluster_hubs", {"cluster": f"{RUN}cA"}).rows
    # a5 has the most followers (6) but none from its own cluster: not a hub of it.
    assert rows == [
        {"user": ns("a1"), "in_cluster_followers": 4, "all_followers": 7, "community": A},
        {"user": ns("a2"), "in_cluster_followers": 3, "all_followers": 3, "community": A},
        {"user": ns("a4"), "in_cluster_followers": 1, "all_followers": 1, "community": A},
    ]
    assert [r["user"] for r in run_query(
        planted, "cluster_hubs", {"cluster": f"{RUN}cA", "limit": 1}).rows] == [ns("a1")]


@pytest.mark.neo4j
def test_communities_that_follow_each_other_rank_by_the_smaller_normalised_share(
        planted: Driver) -> None:
    rows = _mine(run_query(planted, "community_follows", {"limit": 10_000}).rows,
                 "community_a", "community_b")
    # C -> A has the most follows (5) but A never follows C back: not a pair.
    assert rows == [
        {"community_a": A, "community_b": B, "follows_a_to_b": 2, "follows_b_to_a": 4,
         "share_a_to_b": 0.2, "share_b_to_a": 0.5, "mutual_share": 0.2},
        {"community_a": B, "community_b": C, "follows_a_to_b": 1, "follows_b_to_a": 1,
         "share_a_to_b": 0.125, "share_b_to_a": 0.125, "mutual_share": 0.125},
    ]
    only_a = run_query(planted, "community_follows", {"community": A}).rows
    assert [(r["community_a"], r["community_b"]) for r in only_a] == [(A, B)]
    both_ways_twice = run_query(planted, "community_follows", {"community": B, "min_follows": 2})
    assert [(r["community_a"], r["community_b"]) for r in both_ways_twice.rows] == [(A, B)]


@pytest.mark.neo4j
def test_polls_popular_inside_a_community_count_distinct_members(planted: Driver) -> None:
    rows = run_query(planted, "community_popular_polls", {"community": A}).rows
    assert [(r["poll"], r["members"], r["engagements"]) for r in rows] == [
        (ns("pc"), 5, 5), (ns("pb"), 3, 4), (ns("pa"), 1, 1)]
    assert rows[0]["member_share"] == 1.0
    assert (rows[1]["author"], rows[1]["author_community"]) == (ns("b1"), B)

    # pa is the most engaged poll overall (5 people) but inside A only a5 engaged with it.
    in_b = run_query(planted, "community_popular_polls", {"community": B}).rows
    assert [(r["poll"], r["members"]) for r in in_b] == [(ns("pa"), 4)]


@pytest.mark.neo4j
def test_popular_polls_in_a_time_window_and_by_event_type(planted: Driver) -> None:
    early = run_query(planted, "community_popular_polls",
                      {"community": A, "since": 1000, "until": 5000}).rows
    assert [r["poll"] for r in early] == [ns("pb"), ns("pa")]
    # As typed on the command line: text is parsed by the declared types.
    comments = run_query(planted, "community_popular_polls",
                         {"community": A, "event_types": "COMMENT", "since": "0"}).rows
    assert [(r["poll"], r["members"]) for r in comments] == [(ns("pb"), 1)]


# -- the analyst's other questions ------------------------------------------------------

@pytest.mark.neo4j
def test_cluster_neighbours_are_reached_through_followees_and_not_yet_followed(
        planted: Driver) -> None:
    rows = run_query(planted, "cluster_neighbours", {"user": ns("a5")}).rows
    # a1 and a4 are followed already; b1 is reached too but lives in another cluster.
    assert len(rows) == 1
    assert rows[0]["user"] == ns("a2") and rows[0]["via_followees"] == 2
    assert sorted(rows[0]["through"]) == [ns("a1"), ns("a4")]


@pytest.mark.neo4j
def test_community_bridges_rank_by_outside_follow_share(planted: Driver) -> None:
    rows = run_query(planted, "community_bridges", {"community": C, "min_follows": 1}).rows
    assert [(r["user"], r["outside_share"], r["communities_reached"]) for r in rows] == [
        (ns("c3"), 1.0, 2), (ns("c1"), 0.6667, 1), (ns("c2"), 0.6667, 1)]
    busy = run_query(planted, "community_bridges", {"community": C, "min_follows": 3}).rows
    assert [r["user"] for r in busy] == [ns("c1"), ns("c2")]


@pytest.mark.neo4j
def test_travelling_authors_ignore_their_own_engagement(planted: Driver) -> None:
    rows = _mine(run_query(planted, "travelling_authors",
                           {"min_engagers": 1, "limit": 10_000}).rows, "author")
    assert [(r["author"], r["engagers"], r["outside_engagers"], r["outside_share"])
            for r in rows] == [
        (ns("c1"), 5, 5, 1.0), (ns("b1"), 3, 3, 1.0), (ns("a1"), 5, 4, 0.8)]
    assert run_query(planted, "travelling_authors", {"community": A, "min_engagers": 6}).rows == []


@pytest.mark.neo4j
def test_hunch_graph_query_prints_the_rows(planted: Driver) -> None:
    shown = CliRunner().invoke(cli, ["graph", "query", "cluster_hubs", "-p", f"cluster={RUN}cA",
                                     "--json"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[0].startswith(f'{{"user": "{ns("a1")}"')
    table = CliRunner().invoke(cli, ["graph", "query", "community_popular_polls",
                                     "--param", f"community={A}", "--param", "limit=1"],
                              env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert ns("pc") in table.output and ns("pb") not in table.output


def test_a_value_neo4j_refuses_points_at_the_parameter_not_the_file(planted: Driver) -> None:
    """helper-75: `-p limit=-1` said "check graph/cypher/cluster_hubs.cypher"."""
    result = CliRunner().invoke(cli, ["graph", "query", "cluster_hubs", "-p",
                                      f"cluster={RUN}cA", "-p", "limit=-1"])
    assert result.exit_code == 2, result.output
    assert "change the --param value" in result.stderr and ".cypher" not in result.stderr


# -- mistakes an analyst makes, answered before or without the server -------------------

def test_every_shipped_query_parses_and_the_issue_questions_are_there() -> None:
    names = query_names()
    assert {"cluster_hubs", "community_follows", "community_popular_polls"} <= set(names)
    assert len(names) >= 6
    for name in names:
        query = load_query(name)
        assert query.question.endswith("?") and query.description


def test_unknown_query_and_bad_parameters_say_what_to_do() -> None:
    with pytest.raises(UnknownAnalystQuery, match="cluster_hubs"):
        load_query("../store")
    hubs = load_query("cluster_hubs")
    with pytest.raises(InvalidQueryParameter, match="needs --param cluster="):
        hubs.bind({})
    with pytest.raises(InvalidQueryParameter, match="no parameter.*clutser"):
        hubs.bind({"clutser": "c1"})
    with pytest.raises(InvalidQueryParameter, match="'limit' must be of type int"):
        hubs.bind({"cluster": "c1", "limit": "ten"})
    assert hubs.bind({"cluster": "c1"}) == {"cluster": "c1", "limit": 10}
    polls = load_query("community_popular_polls")
    assert polls.bind({"community": "k", "event_types": "HUNCH, COMMENT", "since": "null"}) == {
        "community": "k", "since": None, "until": None, "event_types": ["HUNCH", "COMMENT"],
        "limit": 10}


def test_an_integer_cypher_cannot_hold_is_refused_before_connecting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """helper-75: `-p limit=99999999999999999999` was an OverflowError traceback from
    the driver; Cypher's integers are 64-bit."""
    hubs = load_query("cluster_hubs")
    for value in ("9223372036854775808", 2**63, -(2**63) - 1):
        with pytest.raises(InvalidQueryParameter, match="64-bit"):
            hubs.bind({"cluster": "c1", "limit": value})
    assert hubs.bind({"cluster": "c1", "limit": str(2**63 - 1)})["limit"] == 2**63 - 1
    monkeypatch.setenv("HUNCH_NEO4J_URI", "bolt://127.0.0.1:1")  # never reached
    result = CliRunner().invoke(cli, ["graph", "query", "cluster_hubs", "-p", "cluster=c1",
                                      "-p", "limit=99999999999999999999"])
    assert result.exit_code == 2, result.output
    assert "64-bit" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_query_file_with_an_unused_or_unreadable_parameter_is_refused() -> None:
    with pytest.raises(MalformedQueryFile, match="never uses \\$limit"):
        parse_query("q", "// Who?\n// @param limit int = 3 -- rows\nRETURN 1")
    with pytest.raises(MalformedQueryFile, match="cannot read"):
        parse_query("q", "// Who?\n// @param limit integer\nRETURN $limit")


def test_cli_without_a_server_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUNCH_NEO4J_URI", "bolt://127.0.0.1:1")
    result = CliRunner().invoke(cli, ["graph", "query", "cluster_hubs", "-p", "cluster=c1"])
    assert result.exit_code == 2
    assert "unreachable" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_load_refuses_a_file_without_its_columns(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUNCH_NEO4J_URI", "bolt://127.0.0.1:1")  # never reached
    items = _write_csv(tmp_path / "items.csv", ["ITEM_ID", "CREATION_TIMESTAMP"], [("p1", 1)])
    result = CliRunner().invoke(cli, ["graph", "load", "--items", str(items)])
    assert result.exit_code == 2
    assert "missing column(s) ['AUTHOR_ID']" in result.stderr


def test_load_checks_every_row_as_the_import_does_before_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """helper-75: `graph load` read items.csv and interactions.csv unchecked: 'inf' was an
    OverflowError traceback, a 40,000-character id a Neo4j DatabaseError traceback after
    the interactions' first chunks were written, ' p9 ' and 'a1 ' were other polls and
    users than the event store's, and ' hunch ' an ENGAGED type of its own."""
    monkeypatch.setenv("HUNCH_NEO4J_URI", "bolt://127.0.0.1:1")  # never reached
    items = tmp_path / "items.csv"
    items.write_bytes(b"ITEM_ID,AUTHOR_ID,CREATION_TIMESTAMP\r\np1,a1,1700000000\r\n"
                      b"p2,a1,inf\r\n p3 ,a1 ,1\r\np4|x,a\x1b,1\r\np5\r\np6,a1,\r\n"
                      b"p7,a\xff,1\r\n")
    result = CliRunner().invoke(cli, ["graph", "load", "--items", str(items)])
    assert result.exit_code == 2, result.output
    for line, reason in ((3, "'inf' is not an integer"), (4, "ITEM_ID ' p3 '"),
                         (4, "AUTHOR_ID 'a1 '"), (5, "contains '|'"),
                         (5, "control character"), (6, "expected 3 fields"),
                         (8, "not UTF-8")):
        assert f"items.csv:{line}: " in result.stderr and reason in result.stderr, (
            line, reason, result.stderr)
    assert "unreachable" not in result.stderr  # refused before connecting
    rows = [("u1", "p1", 1_700_000_000, "HUNCH")] * 60_000 + [("u" + "x" * 40_000, "p1", 1, "")]
    interactions = _write_csv(tmp_path / "interactions.csv",
                              ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"], rows)
    result = CliRunner().invoke(cli, ["graph", "load", "--interactions", str(interactions)])
    assert result.exit_code == 2, result.output
    assert "interactions.csv:60002: USER_ID is 40001 characters long" in result.stderr
    assert "unreachable" not in result.stderr


def test_load_stores_event_types_as_the_import_does(tmp_path: Path) -> None:
    from gateway.cli.graph import _engagement_chunks

    interactions = _write_csv(tmp_path / "interactions.csv",
                              ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"],
                              [("u1", "p1", 1, " hunch "), ("u1", "p1", 2, "HUNCH"),
                               ("u2", "p1", "1.7e9", "")])
    (chunk,) = list(_engagement_chunks(interactions))
    assert [(e.user_id, e.event_type, e.timestamp) for e in chunk] == [
        ("u1", "HUNCH", 1), ("u1", "HUNCH", 2), ("u2", "INTERACTION", 1_700_000_000)]
