"""``hunch graph``: follower-graph analytics (``cluster``: features, K-Means, communities,
labels written back, Users dataset exported, report)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from recsys.errors import HunchError


class GraphCommandError(HunchError):
    """A graph error (unreachable Neo4j, bad input file, ...) surfaced by the CLI."""


def _k_range(value: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: write the range as LOW:HIGH, e.g. 4:30") from None
    if not 2 <= low <= high:
        raise click.BadParameter(f"{value!r}: need 2 <= LOW <= HIGH")
    return low, high


@click.group()
def graph() -> None:
    """The follower graph: clustering users and exporting their labels."""


@graph.command()
@click.option("--store", "store_kind", type=click.Choice(["memory", "neo4j"]), default="memory",
              show_default=True, help="memory loads --follows into this process; neo4j uses "
              "HUNCH_NEO4J_URI/USER/PASSWORD.")
@click.option("--follows", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="follows.csv (FOLLOWER_ID, FOLLOWEE_ID, TIMESTAMP).")
@click.option("--load", is_flag=True, help="With --store neo4j: load --follows into Neo4j first.")
@click.option("--k", type=click.IntRange(min=2), help="Number of K-Means clusters.")
@click.option("--k-range", default="4:30", show_default=True,
              help="LOW:HIGH range to choose k from when --k is not given.")
@click.option("--method", type=click.Choice(["leiden", "louvain", "both"]), default="both",
              show_default=True, help="Community detection; with both, the higher modularity wins.")
@click.option("--engine", type=click.Choice(["auto", "gds", "python"]), default="auto",
              show_default=True, help="auto uses GDS when Neo4j has the plugin.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("graph-report"), show_default=True,
              help="Where users.csv, users.schema.json, report.json and plots go.")
@click.option("--users-csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An existing users.csv whose other columns are kept.")
@click.option("--ground-truth", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ground_truth.json with planted communities: the report adds NMI.")
@click.option("--seed", default=0, show_default=True, type=int)
def cluster(store_kind: str, follows: Path | None, load: bool, k: int | None, k_range: str,
            method: str, engine: str, out_dir: Path, users_csv: Path | None,
            ground_truth: Path | None, seed: int) -> None:
    """Cluster users by whom they follow, write CLUSTER/COMMUNITY labels back to the
    graph store and export them as the Users dataset."""
    from graph.analytics import ClusterOptions
    from graph.errors import GraphError

    options = ClusterOptions(
        k=k, k_range=_k_range(k_range),
        methods=("leiden", "louvain") if method == "both" else (method,), seed=seed,
    )
    try:
        summary = asyncio.run(_run(store_kind, follows, load, engine, options, out_dir,
                                   users_csv, ground_truth))
    except GraphError as exc:
        raise GraphCommandError(str(exc)) from exc
    km = summary["kmeans"]
    click.echo(
        f"{summary['users']} users, {summary['follows']} follows, engine {summary['engine']}: "
        f"K-Means k={km['k']} (silhouette {km['silhouette']}, modularity {km['modularity']}); "
        f"{summary['community_method']} communities "
        f"{summary['communities'][summary['community_method']]['count']} "
        f"(modularity {summary['communities'][summary['community_method']]['modularity']})"
    )
    if summary.get("nmi"):
        click.echo(f"NMI against the ground truth: {summary['nmi']}")
    click.echo(f"wrote {out_dir}/users.csv, users.schema.json, report.json and plots")


async def _run(store_kind, follows, load, engine, options, out_dir, users_csv, ground_truth):
    from rich.console import Console

    from graph.analytics import (
        GraphAnalyticsError,
        cluster_store,
        load_ground_truth,
        read_follows_csv,
    )
    from graph.store import Follow

    console = Console(stderr=True)
    truth = load_ground_truth(ground_truth) if ground_truth else None
    rows = read_follows_csv(follows) if follows else None
    with console.status("starting") as status:
        def progress(step: str) -> None:
            console.log(step)
            status.update(step)

        if store_kind == "memory":
            if engine == "gds":
                raise GraphAnalyticsError("--engine gds needs --store neo4j")
            if rows is None:
                raise GraphAnalyticsError(
                    "the in-process store starts empty: pass --follows follows.csv"
                )
            from graph.memory_store import InMemoryGraphStore

            store = InMemoryGraphStore()
            await store.upsert_follows(Follow(a, b, t) for a, b, t in rows)
            outcome = await cluster_store(store, out_dir, options, users_csv, truth, progress)
            return outcome.summary

        from graph.gds import GdsUnavailable, cluster_in_gds, gds_version, neo4j_settings, open_driver
        from graph.neo4j_store import Neo4jGraphStore

        settings = neo4j_settings()
        # Reachability first, so an unreachable server fails before anything is written.
        driver = await asyncio.to_thread(open_driver, settings.uri, settings.user, settings.password)
        store = Neo4jGraphStore(settings.uri, settings.user, settings.password)
        try:
            if load:
                if rows is None:
                    raise GraphAnalyticsError("--load needs --follows follows.csv")
                progress(f"loading {len(rows)} follows into Neo4j")
                await store.ensure_schema()
                await store.upsert_follows(Follow(a, b, t) for a, b, t in rows)
            version = await asyncio.to_thread(gds_version, driver) if engine != "python" else None
            if engine == "gds" and version is None:
                raise GdsUnavailable(
                    f"Neo4j at {settings.uri} has no GDS plugin (gds.version() failed): "
                    "install it or use --engine python"
                )
            if version is not None:
                progress(f"GDS {version} found: running inside Neo4j")
                outcome = await cluster_in_gds(store, driver, out_dir, options, users_csv, truth,
                                               progress)
            else:
                outcome = await cluster_store(store, out_dir, options, users_csv, truth, progress)
            return outcome.summary
        finally:
            driver.close()
            await store.close()
