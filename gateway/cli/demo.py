"""``hunch demo``: the embedded default end to end on one laptop.

Generates demo data (once), clusters the follower graph in the in-process store (labels
become the users' CLUSTER and COMMUNITY metadata) and imports it, trains the three
recipes, prints a development token and an example query, and serves the feed with
GraphiQL on http://127.0.0.1:8000/graphql. Run again on the same home (a container's
restart), it imports and trains nothing: the events stored since are kept.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from gateway.settings import load_settings

# The edge's recommendationId (the connection's is deprecated: a page may hold polls of
# two recommendations, and clients keep one page's connection fields when they merge).
EXAMPLE_QUERY = """{
  feed(first: 10) {
    pageInfo { hasNextPage endCursor }
    edges { source score promotionName recommendationId node { id categories question } }
  }
}"""


@click.command()
@click.option("--users", default=2000, show_default=True, type=click.IntRange(min=10))
@click.option("--polls", default=5000, show_default=True, type=click.IntRange(min=10))
@click.option("--days", default=14, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Serve the feed after preparing (--no-serve: prepare and exit).")
def demo(users: int, polls: int, days: int, seed: int, serve: bool) -> None:
    """Generate, import, cluster, train, then serve the feed with GraphiQL."""
    from recsys.datasets import import_directory
    from recsys.demo_data import generate_demo_data
    from recsys.event_stores import describe_url, open_event_store
    from recsys.training import train

    settings = load_settings()
    data_dir = Path(settings.home) / "demo-data"
    if not (data_dir / "interactions.csv").exists():
        # The demo's history ends now, not on the generator's fixed 2024 dates: events
        # the served app then records continue it. Ending in 2024, the first live vote
        # moved Trending-Now's clock to today, past two empty intervals, and trending
        # fell back to popularity for everyone (found by a client's probe).
        start = int(time.time()) // 60 * 60 - days * 86_400
        summary = generate_demo_data(data_dir, users=users, polls=polls, days=days, seed=seed,
                                     start=start, progress=True)
        click.echo(summary.describe())
    with open_event_store(settings.event_store_url) as store:
        counts = store.counts()
    if any(counts.values()):
        # A restart (the container's entry point runs this at every start): the store
        # holds acknowledged events since the demo's import; importing again would
        # merge the demo's rows back over edits, and a full import would delete them.
        click.echo(f"{describe_url(settings.event_store_url)} already holds {counts['interactions']} "
                   f"interactions, {counts['impressions']} impressions and "
                   f"{counts['items']} polls: the demo data is not imported again "
                   f"(to start over: hunch data import {data_dir} --mode full)")
    else:
        _cluster(data_dir, Path(settings.home) / "graph-report")
        report = import_directory(data_dir, settings.event_store_url, mode="incremental",
                                  progress=True, rules=settings.event_rules())
        click.echo(report.describe())
    if settings.graph_store == "neo4j":
        # The compose route: the demo's follows go into Neo4j while it holds none (a
        # start after that would add back follows users have undone since); decided by
        # Neo4j's own count, so a load that failed is tried again at the next start.
        import asyncio

        from gateway.cli.graph import load_follows_if_empty

        loaded = asyncio.run(load_follows_if_empty(data_dir / "follows.csv",
                                                   data_dir / "items.csv"))
        click.echo(f"the follower graph is Neo4j ({settings.neo4j_uri}): " + (
            ", ".join(f"{n:,} {what}" for what, n in loaded.items()) + " loaded"
            if loaded else "it holds follows already; nothing loaded"))
    artifacts = settings.artifact_store()  # the gateway's: a directory or S3
    for recipe in ("popularity-count", "trending-now", "user-personalization"):
        if artifacts.latest(recipe) is not None:  # trained at an earlier start
            continue
        manifest = train(recipe, data_dir, artifacts, {})
        click.echo(f"trained {recipe} version {manifest['version']}")

    from gateway.auth import issue_token

    with (data_dir / "users.csv").open() as fh:
        fh.readline()
        user = fh.readline().split(",")[0]
    token = issue_token(settings, user)
    admin = issue_token(settings, "internal-tools", admin=True)
    url = f"http://{settings.host}:{settings.port}/graphql"
    click.echo(f"\nDevelopment token for user {user} (24 h):\n  {token}")
    click.echo(f"Admin token (internal tools):\n  {admin}")
    click.echo(f"\nGraphiQL: {url}  (add the header  Authorization: Bearer <token>)")
    click.echo(f"Example query:\n{EXAMPLE_QUERY}")
    click.echo(f"\ncurl -s {url} -H 'Authorization: Bearer {token[:16]}...' "
               "-H 'content-type: application/json' -d '{\"query\": \"{ feed(first: 5) "
               "{ edges { source node { id question } } } }\"}'\n")
    if serve:
        import os

        from gateway.cli.serve import serve as serve_command

        # The embedded graph store starts empty: give it the demo's follows.
        os.environ.setdefault("HUNCH_FOLLOWS_PATH", str(data_dir / "follows.csv"))

        click.get_current_context().invoke(serve_command)


def _cluster(data_dir: Path, report_dir: Path) -> None:
    """Cluster the follower graph in the in-process store; CLUSTER and COMMUNITY land in
    data_dir/users.csv, the report (JSON + plots) in report_dir."""
    import asyncio
    import shutil

    from graph.analytics import ClusterOptions, cluster_store, load_ground_truth, read_follows_csv
    from graph.memory_store import InMemoryGraphStore
    from graph.store import Follow

    async def run() -> dict:
        store = InMemoryGraphStore()
        rows = read_follows_csv(data_dir / "follows.csv")
        await store.upsert_follows(Follow(a, b, t) for a, b, t in rows)
        truth_file = data_dir / "ground_truth.json"
        truth = load_ground_truth(truth_file) if truth_file.exists() else None
        outcome = await cluster_store(store, report_dir, ClusterOptions(),
                                      data_dir / "users.csv", truth, lambda step: None)
        return outcome.summary

    summary = asyncio.run(run())
    for name in ("users.csv", "users.schema.json"):
        shutil.copyfile(report_dir / name, data_dir / name)
    method = summary["community_method"]
    click.echo(
        f"clustered the follower graph: K-Means k={summary['kmeans']['k']}, "
        f"{summary['communities'][method]['count']} {method} communities"
        + (f", NMI vs planted {summary['nmi']}" if summary.get("nmi") else "")
        + f" (report in {report_dir})")
