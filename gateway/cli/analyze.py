"""``hunch analyze follow-impact|export-served|text|exploration``, ``hunch tune trending``
and ``hunch report``.

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
# The follow-impact shares, as the table names them (recsys.analysis.follow_impact).
SHARE_LABELS = {"followee_share": "authored-by-followee share",
                "engaged_followee_share": "engaged-by-followee share"}


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


def load_live(data_dir: Path, dataset=None):
    """``dataset`` (else ``data_dir``, read) as every analysis reads it: its deleted polls
    (deleted_polls.csv) left out, items and events, as training leaves them out."""
    from recsys.datasets import load_directory

    return (dataset or load_directory(data_dir)).without_deleted()


def _loaded(data_dir: Path, say, as_json: bool = False):
    """The directory for a command, its note of deleted polls left out echoed (on
    stderr under --json: stdout stays JSON)."""
    say(f"loading {data_dir}")
    ds = load_live(data_dir)
    if ds.deletions:
        click.echo(ds.left_out_note(), err=as_json)
    return ds


def run_follow_impact(data_dir: Path, *, seeds: tuple[int, ...] = (0, 1),
                      max_users: int | None = None, progress=None, dataset=None):
    from recsys.analysis.follow_impact import (
        FollowImpactConfig,
        follow_impact,
        labels_from_users,
        read_follows,
    )
    say = progress or (lambda _m: None)
    say(f"loading {data_dir}")
    ds = load_live(data_dir, dataset)
    follows = read_follows(data_dir / FOLLOWS_FILE)
    labels = labels_from_users(ds.users)
    if not labels:
        labels = graph_labels(data_dir / FOLLOWS_FILE, progress=say)
    return follow_impact(ds.interactions, ds.items, ds.users, follows, labels=labels,
                         impressions=ds.impressions,
                         config=FollowImpactConfig(seeds=seeds, max_users=max_users),
                         progress=say)


def run_served_impact(data_dir: Path, served_csv: Path, follows_csv: Path | None = None,
                      progress=None, dataset=None, note=None):
    """Follow impact on a served-feed log (recsys.analysis.served documents the format).
    Served polls since deleted are left out with their items (``note`` is told how
    many), as if never served: kept without their authors, they read as non-followees'."""
    from recsys.analysis.follow_impact import labels_from_users, read_follows
    from recsys.analysis.served import read_served, served_follow_impact

    say = progress or (lambda _m: None)
    follows_csv = follows_csv or data_dir / FOLLOWS_FILE
    say(f"loading {data_dir} and {served_csv}")
    ds = load_live(data_dir, dataset)
    deleted = {d.item_id for d in ds.deletions}
    served = read_served(served_csv)
    live = [p for p in served if p.item_id not in deleted]
    if len(live) < len(served) and note is not None:
        note(f"note: left out {len(served) - len(live):,} served polls of {served_csv.name} "
             "whose polls were deleted (deleted_polls.csv)")
    labels = labels_from_users(ds.users) or graph_labels(follows_csv, progress=say)
    return served_follow_impact(live, read_follows(follows_csv), ds.items, labels)


def run_trend_tuning(data_dir: Path, progress=None, dataset=None):
    from recsys.analysis.trend_tuning import tune_trending

    ds = load_live(data_dir, dataset)
    return tune_trending(ds.interactions, progress=progress)


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
@click.option("--served", "served_csv", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Analyse this served-feed log (see export-served) instead of retraining.")
@click.option("--follows", "follows_csv", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="follows.csv (default: the one in --data).")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def follow_impact_command(data_dir: Path, seeds: int, max_users: int | None,
                          served_csv: Path | None, follows_csv: Path | None,
                          as_json: bool) -> None:
    """Do follow-graph labels raise the share of polls from followees, at what cost?"""
    if served_csv is not None:
        with _status(not as_json) as say:
            served = run_served_impact(
                data_dir, served_csv, follows_csv, progress=say,
                dataset=_loaded(data_dir, say, as_json),
                note=lambda line: click.echo(line, err=as_json))
        out = served.to_json()
        if as_json:
            click.echo(json.dumps(out, indent=1))
            return
        c = out["comparison"]
        click.echo(f"{out['users']} users, {out['served']} served polls; followee share "
                   f"{c['mean_treatment']:.4f} vs control {c['mean_baseline']:.4f} "
                   f"(difference {c['difference']:.4f}, 95% CI {c['ci_low']:.4f}.."
                   f"{c['ci_high']:.4f}, paired t p {c['paired_t_p']:.3g}); "
                   f"follow effect: {out['follow_effect']}")
        for source, v in out["by_source"].items():
            click.echo(f"  {source:22s} served {v['served']:6d}  followee share "
                       f"{v['followee_share']:.4f}")
        return
    with _status(not as_json) as say:
        result = run_follow_impact(data_dir, seeds=tuple(range(seeds)), max_users=max_users,
                                   progress=say, dataset=_loaded(data_dir, say, as_json))
    out = result.to_json()
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    shares = [m for m in SHARE_LABELS if m in next(iter(out["variants"].values()))]
    for name, v in out["variants"].items():
        click.echo(f"{name:22s} " + "  ".join(f"{SHARE_LABELS[m]} {v[m]:.4f}" for m in shares)
                   + f"  NDCG@10 {v['ndcg_at_10']:.4f}")
    for c in [*out["comparisons"], out["engagement"]]:
        mde = c["relative_min_detectable_effect"]
        click.echo(f"{c['metric']:24s} {c['treatment']} vs {c['baseline']}: {c['verdict']} "
                   f"({c['difference']:+.4f}, 95% CI {c['ci_low']:+.4f}..{c['ci_high']:+.4f}, "
                   f"Holm p {c['holm_p']:.3g}, detectable "
                   + (f"{mde:.0%} of base)" if mde is not None else "n/a)"))
    v = out["verdict"]
    click.echo(f"deciding share: {SHARE_LABELS[out['share_metric']]}; "
               f"natural rate {out['natural_rate']:.4f}; graph effect {v['graph_effect']}; "
               f"labels raise share: {v['labels_raise_share'] or 'none'}; lower it: "
               f"{v['labels_lower_share'] or 'none'}; follows matter in engagement: "
               f"{v['follow_effect_in_engagement']}")


@analyze.command("export-served")
@click.option("--sessions", "sessions_db", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The gateway's feed sessions (default <HUNCH_HOME>/sessions.sqlite3).")
@click.option("--out", "out_csv", required=True, type=click.Path(dir_okay=False, path_type=Path))
def export_served_command(sessions_db: Path | None, out_csv: Path) -> None:
    """Write the polls the gateway served (feed sessions) as served.csv."""
    from recsys.analysis.served import export_served

    if sessions_db is None:
        from gateway.settings import load_settings

        settings = load_settings()
        if settings.session_store == "redis":
            # Sessions in Redis expire with their feeds and are not an archive: the
            # served log is this host's SQLite sessions only (helper-64 was told to run
            # the gateway, which was running).
            raise click.ClickException(
                "HUNCH_SESSION_STORE=redis: feed sessions live in Redis, which keeps them "
                "only until they expire, and export-served reads a host's SQLite sessions "
                "file; pass --sessions FILE of a host that served with "
                "HUNCH_SESSION_STORE=sqlite")
        sessions_db = settings.sessions_db
    rows = export_served(sessions_db, out_csv)
    click.echo(f"wrote {rows} served polls to {out_csv}")


def run_text_ablation(data_dir: Path, progress=None, dataset=None):
    from recsys.analysis.text_ablation import text_ablation
    from recsys.demo_data import read_comments

    ds = load_live(data_dir, dataset)
    return text_ablation(ds.interactions, ds.items, ds.users, impressions=ds.impressions,
                         comment_texts=read_comments(data_dir), progress=progress)


def run_exploration(data_dir: Path, progress=None, dataset=None):
    from recsys.analysis.exploration import exploration_replay

    ds = load_live(data_dir, dataset)
    return exploration_replay(ds.interactions, ds.items, ds.users,
                              impressions=ds.impressions, progress=progress)


@analyze.command("text")
@_data
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def text_command(data_dir: Path, as_json: bool) -> None:
    """What each poll text field adds, overall (NDCG@10) and on cold polls (recall@25)."""
    with _status(not as_json) as say:
        result = run_text_ablation(data_dir, progress=say,
                                   dataset=_loaded(data_dir, say, as_json))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
        return
    for name, v in result.variants.items():
        click.echo(f"{name:28s} NDCG@10 {v['ndcg_at_10']:.4f}  cold-poll recall@25 "
                   f"{v['cold_poll_recall_at_25']:.4f}")
    for r in result.field_ranking():  # each field alone vs no text, on cold candidates
        tie = ""
        if r.get("tied_with_next") is not None:  # the order with the next field
            tie = (f"  {'tied with' if r['tied_with_next'] else 'above'} next "
                   f"({r['vs_next']:+.4f} [{r['vs_next_ci_low']:+.4f}, "
                   f"{r['vs_next_ci_high']:+.4f}])")
        click.echo(f"only {r['field']:23s} cold-candidate AUC gain {r['gain']:+.4f}  "
                   f"Holm p {r['holm_p']:.3g}{tie}")


@analyze.command("exploration")
@_data
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def exploration_command(data_dir: Path, as_json: bool) -> None:
    """Replay held-out time: exposure of new and unproven polls, its spread, wasted
    impressions and NDCG@10 per exploration weight, with and without impressions."""
    with _status(not as_json) as say:
        result = run_exploration(data_dir, progress=say,
                                 dataset=_loaded(data_dir, say, as_json))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
        return
    _echo_exploration(result)


def _echo_exploration(result) -> None:
    from recsys.analysis.exploration import ARM_METRICS, METRICS

    columns = (*METRICS, *ARM_METRICS)
    short = {"new_poll_share": "new", "unproven_poll_share": "unproven",
             "dead_impression_share": "dead", "ndcg_at_10": "NDCG@10",
             "new_poll_breadth": "new breadth", "unproven_poll_breadth": "unpr breadth",
             "new_poll_impression_gini": "new Gini", "new_poll_top10_share": "new top10"}
    click.echo(f"{result.requests} feeds per arm; polls new in the window "
               f"{result.eligible.get('new_polls')}, unproven "
               f"{result.eligible.get('unproven_polls')}")
    click.echo(f"{'arm':36s}" + "".join(f"{short[c]:>13s}" for c in columns))
    for name, v in result.arms.items():
        click.echo(f"{name:36s}" + "".join(f"{v[c]:13.4f}" for c in columns))
    click.echo("differences (treatment - baseline, * = significant):")
    rows = [(c.metric, c.treatment, c.baseline, c.difference, c.significant)
            for c in (*result.comparisons, *result.arm_comparisons)]
    for metric, treatment, baseline, diff, sig in rows:
        click.echo(f"  {short[metric]:>12s}  {treatment:32s} vs {baseline:32s} "
                   f"{diff:+.4f}{' *' if sig else ''}")
    if result.headroom:
        h = result.headroom
        reach = ", ".join(f"weight {w}: {s:.3f}" for w, s in h["reachable_share"].items())
        click.echo(f"unproven polls sit a median {h['median_gap_below_last_slot']:.2f} score "
                   f"units below the feed's last slot (bonus of an unseen poll at weight 1: "
                   f"{h['max_bonus_at_weight_1']:g}); share within reach: {reach}")


@click.group()
def tune() -> None:
    """Tune recipe settings by backtest."""


@tune.command("trending")
@_data
def tune_trending_command(data_dir: Path) -> None:
    """Backtest the four trend discovery frequencies and recommend one."""
    with _status(True) as say:
        result = run_trend_tuning(data_dir, progress=say, dataset=_loaded(data_dir, say))
    for row in result.to_json()["table"]:
        click.echo(f"{row['frequency']:11s} NDCG@10 {row['ndcg_at_10']:.4f}  precision@10 "
                   f"{row['precision_at_10']:.4f}  empty {row['empty_interval_share']:.3f}")
    click.echo(f"recommended: {result.recommended}")


@click.command("report")
@_data
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--seeds", default=2, show_default=True)
@click.option("--served", "served_csv", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also analyse this served-feed log.")
def report(data_dir: Path, out_dir: Path, seeds: int, served_csv: Path | None) -> None:
    """One HTML page (tables + PNG plots) and report.json of the roadmap analyses."""
    from recsys.analysis.exploration import ExplorationReplayError
    from recsys.analysis.report import write_report
    from recsys.analysis.trend_tuning import TrendTuningError

    not_run: dict[str, str] = {}
    with _status(True) as say:
        ds = _loaded(data_dir, say)  # once: the analyses only read it
        follow = run_follow_impact(data_dir, seeds=tuple(range(seeds)), progress=say,
                                   dataset=ds)
        try:
            trend = run_trend_tuning(data_dir, progress=say, dataset=ds)
        except TrendTuningError as e:  # e.g. listens without days of times (Last.fm)
            trend, not_run["trend discovery frequency"] = None, str(e)
        text = run_text_ablation(data_dir, progress=say, dataset=ds)
        try:
            exploration = run_exploration(data_dir, progress=say, dataset=ds)
        except ExplorationReplayError as e:  # e.g. listens in a synthetic order (Last.fm)
            exploration, not_run["exploration"] = None, str(e)
        served = (run_served_impact(data_dir, served_csv, progress=say, dataset=ds,
                                    note=click.echo) if served_csv else None)
        say("writing the report")
        path = write_report(out_dir, follow=follow, trend=trend, text=text,
                            exploration=exploration, served=served, not_run=not_run)
    click.echo(f"wrote {path}")
