"""``hunch analyze follow-impact``, ``hunch tune trending`` and ``hunch report``.

The composition root: follow-impact needs CLUSTER/COMMUNITY labels, which the graph
package computes; recsys may not import graph, so this module runs graph analytics on
follows.csv first when users.csv carries no labels.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import click

FOLLOWS_FILE = "follows.csv"


@contextmanager
def _status(enabled: bool):
    if not enabled:
        yield lambda _m: None
        return
    from rich.console import Console

    with Console(stderr=True).status("starting") as status:
        yield lambda message: status.update(message)


def graph_labels(follows_csv: Path, progress=None) -> dict[str, dict[str, str]]:
    """CLUSTER (K-Means on the graph embedding) and COMMUNITY (Leiden/Louvain) per user."""
    from graph.analytics import ClusterOptions, analyze_edges, read_follows_csv

    edges = [(a, b) for a, b, _ in read_follows_csv(follows_csv)]
    outcome = analyze_edges(edges, ClusterOptions(), progress=progress)
    return {u: {"CLUSTER": lab.cluster, "COMMUNITY": lab.community}
            for u, lab in outcome.labels.items()}


def run_follow_impact(data_dir: Path, *, seeds: tuple[int, ...] = (0, 1),
                      max_users: int | None = None, progress=None):
    from recsys.analysis.follow_impact import (
        FollowImpactConfig,
        follow_impact,
        labels_from_users,
        read_follows,
    )
    from recsys.datasets import load_directory

    say = progress or (lambda _m: None)
    say(f"loading {data_dir}")
    ds = load_directory(data_dir)
    follows = read_follows(data_dir / FOLLOWS_FILE)
    labels = labels_from_users(ds.users)
    if not labels:
        labels = graph_labels(data_dir / FOLLOWS_FILE, progress=say)
    return follow_impact(ds.interactions, ds.items, ds.users, follows, labels=labels,
                         impressions=ds.impressions,
                         config=FollowImpactConfig(seeds=seeds, max_users=max_users),
                         progress=say)


def run_trend_tuning(data_dir: Path, progress=None):
    from recsys.analysis.trend_tuning import tune_trending
    from recsys.datasets import load_directory

    return tune_trending(load_directory(data_dir).interactions, progress=progress)


_data = click.option("--data", "data_dir", required=True,
                     type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Data directory (interactions.csv, items.csv, users.csv, follows.csv).")


@click.group()
def analyze() -> None:
    """Roadmap analyses on a data directory."""


@analyze.command("follow-impact")
@_data
@click.option("--seeds", default=2, show_default=True, help="Model seeds averaged per user.")
@click.option("--max-users", type=int, default=None, help="Sample this many held-out users.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def follow_impact_command(data_dir: Path, seeds: int, max_users: int | None,
                          as_json: bool) -> None:
    """Do follow-graph labels raise the share of polls from followees, at what cost?"""
    with _status(not as_json) as say:
        result = run_follow_impact(data_dir, seeds=tuple(range(seeds)), max_users=max_users,
                                   progress=say)
    out = result.to_json()
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    for name, v in out["variants"].items():
        click.echo(f"{name:22s} followee share {v['followee_share']:.4f}  "
                   f"NDCG@10 {v['ndcg_at_10']:.4f}")
    click.echo(f"natural rate {out['natural_rate']:.4f}; verdict {out['verdict']}")


@click.group()
def tune() -> None:
    """Tune recipe settings by backtest."""


@tune.command("trending")
@_data
def tune_trending_command(data_dir: Path) -> None:
    """Backtest the four trend discovery frequencies and recommend one."""
    with _status(True) as say:
        result = run_trend_tuning(data_dir, progress=say)
    for row in result.to_json()["table"]:
        click.echo(f"{row['frequency']:11s} NDCG@10 {row['ndcg_at_10']:.4f}  precision@10 "
                   f"{row['precision_at_10']:.4f}  empty {row['empty_interval_share']:.3f}")
    click.echo(f"recommended: {result.recommended}")


@click.command("report")
@_data
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--seeds", default=2, show_default=True)
def report(data_dir: Path, out_dir: Path, seeds: int) -> None:
    """One HTML page (tables + PNG plots) and report.json of the roadmap analyses."""
    from recsys.analysis.report import write_report

    with _status(True) as say:
        follow = run_follow_impact(data_dir, seeds=tuple(range(seeds)), progress=say)
        trend = run_trend_tuning(data_dir, progress=say)
        path = write_report(out_dir, follow=follow, trend=trend)
    click.echo(f"wrote {path}")
