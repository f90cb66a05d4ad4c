"""``hunch neo4j``: start, stop and inspect a local Neo4j 5.26 with GDS and APOC.

A thin shell over ``graph.server`` (which ``python -m graph.server`` also exposes), for
machines without Docker. Settings come from ``HUNCH_NEO4J_*`` (see graph.server); the
``hunch`` group turns graph.errors.GraphError into one line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def neo4j() -> None:
    """A local Neo4j (GDS + APOC) without Docker: start, stop, status."""


@neo4j.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Bolt port [default: the port of HUNCH_NEO4J_URI, 7687]")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Store directory [default: $HUNCH_NEO4J_HOME/data, .neo4j/data]")
@click.option("--heap", default=None, help="JVM heap, e.g. 1g [default: HUNCH_NEO4J_HEAP, 1g]")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Return only once Bolt answers a query.")
def start(port: int | None, data_dir: Path | None, heap: str | None, wait: bool) -> None:
    """Build the server if needed (first time: ~150 MB from Maven Central) and start it
    in the background. Does nothing if it already runs."""
    from graph import server

    click.echo(server.start(port=port, data_dir=data_dir, heap=heap, wait=wait))


@neo4j.command()
def stop() -> None:
    """Stop the server cleanly (SIGTERM) and wait until it has exited."""
    from graph import server

    click.echo(server.stop())


@neo4j.command()
def status() -> None:
    """Print running/stopped, pid, port, and whether GDS and APOC answer."""
    from graph import server

    click.echo(server.status().describe())
