"""The follow-impact analysis on logged feed responses: exported from a real feed-sessions
SQLite file, it finds followee polls over-represented only when the feed put them there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gateway.cli import cli
from recsys.analysis.follow_impact import read_follows
from recsys.analysis.served import (
    SERVED_COLUMNS,
    ServedLogError,
    export_served,
    read_served,
    served_follow_impact,
)
from recsys.datasets import load_directory
from recsys.demo_data import generate_demo_data
from recsys.feed_sessions import SQLiteFeedSessionStore
from recsys.mixer import FeedItem

FEED = 20
IN_NETWORK_SLOTS = 4  # one slot in five from followees, like the mixer's in-network plan


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("served-demo")
    generate_demo_data(d, users=300, polls=600, days=5, seed=4)
    return d


def _serve(demo: Path, db: Path, in_network: bool) -> None:
    """Record one feed session per user, as the gateway's session store does."""
    ds = load_directory(demo)
    follows = read_follows(demo / "follows.csv")
    followees: dict[str, set[str]] = {}
    for a, b in follows:
        followees.setdefault(a, set()).add(b)
    polls = sorted(ds.items)
    by_author: dict[str, list[str]] = {}
    for pid, meta in ds.items.items():
        by_author.setdefault(meta["AUTHOR_ID"], []).append(pid)
    rng = np.random.default_rng(7)
    store = SQLiteFeedSessionStore(db)
    try:
        for user in sorted(ds.users)[:150]:
            mine = sorted(p for f in followees.get(user, ()) for p in by_author.get(f, ()))
            picked = list(rng.choice(polls, FEED, replace=False))
            sources = ["user-personalization"] * FEED
            if in_network and mine:
                k = min(IN_NETWORK_SLOTS, len(mine))
                fresh = [p for p in rng.choice(mine, k, replace=False) if p not in picked]
                for slot, p in zip(range(4, FEED, 5), fresh):
                    picked[slot], sources[slot] = p, "in-network"
            session, _ = store.create(user, 1800)
            store.extend(session, 0, [FeedItem(p, s, 1.0, i + 1, f"rec-{user}")
                                      for i, (p, s) in enumerate(zip(picked, sources))])
    finally:
        store.close()


def _labels(demo: Path) -> dict[str, dict[str, str]]:
    truth = json.loads((demo / "ground_truth.json").read_text())
    return {u: {"COMMUNITY": str(c)} for u, c in truth["user_community"].items()}


@pytest.mark.parametrize("in_network", [True, False], ids=["in-network-on", "random-feed"])
def test_served_feed_effect_found_only_when_feed_favours_followees(demo, tmp_path, in_network):
    db, out = tmp_path / "sessions.sqlite3", tmp_path / "served.csv"
    _serve(demo, db, in_network)
    assert export_served(db, out) == 150 * FEED
    served = read_served(out)
    assert {p.position for p in served} == set(range(FEED))
    ds = load_directory(demo)
    result = served_follow_impact(served, read_follows(demo / "follows.csv"), ds.items,
                                  _labels(demo))
    assert result.follow_effect is in_network
    if in_network:
        assert result.by_source["in-network"]["followee_share"] == 1.0
        assert result.comparison.difference > 0.05


def test_cli_exports_and_analyses_served_feed(demo, tmp_path):
    db, out = tmp_path / "sessions.sqlite3", tmp_path / "served.csv"
    _serve(demo, db, True)
    runner = CliRunner()
    r = runner.invoke(cli, ["analyze", "export-served", "--sessions", str(db), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text().splitlines()[0] == ",".join(SERVED_COLUMNS)
    r = runner.invoke(cli, ["analyze", "follow-impact", "--served", str(out),
                            "--follows", str(demo / "follows.csv"), "--data", str(demo),
                            "--json"])
    assert r.exit_code == 0, r.output
    numbers = json.loads(r.output)
    assert numbers["follow_effect"] is True and numbers["users"] > 100


def test_missing_columns_say_what_is_expected(tmp_path):
    bad = tmp_path / "served.csv"
    bad.write_text("USER_ID,ITEM_ID\nu1,p1\n")
    with pytest.raises(ServedLogError, match="RECOMMENDATION_ID"):
        read_served(bad)
    with pytest.raises(ServedLogError, match="hunch serve"):
        export_served(tmp_path / "nope.sqlite3", tmp_path / "x.csv")


def test_export_served_on_redis_sessions_says_where_the_log_is(tmp_path):
    """helper-64: with HUNCH_SESSION_STORE=redis it said "run the gateway" (which was
    running); Redis keeps sessions only until they expire."""
    r = CliRunner().invoke(cli, ["analyze", "export-served", "--out", str(tmp_path / "s.csv")],
                           env={"HUNCH_HOME": str(tmp_path), "HUNCH_SESSION_STORE": "redis"})
    assert r.exit_code != 0
    assert "HUNCH_SESSION_STORE=redis" in r.output and "--sessions" in r.output
