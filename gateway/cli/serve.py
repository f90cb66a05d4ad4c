"""``hunch serve`` runs the GraphQL gateway under uvicorn; ``hunch token`` prints a
development JWT."""

from __future__ import annotations

import click

from gateway.settings import load_settings


@click.command()
@click.option("--host", default=None, help="Bind address (default HUNCH_HOST, 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default HUNCH_PORT, 8000).")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Worker processes (default HUNCH_WORKERS, 1); they share the SQLite stores.")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the feed over GraphQL at http://HOST:PORT/graphql."""
    import uvicorn

    from gateway.app import configure_logging

    from gateway.auth import check_jwt_settings
    from gateway.production import check_production

    settings = load_settings()
    check_jwt_settings(settings)  # before any worker starts: one line, exit 2
    check_production(settings)
    configure_logging()
    workers = workers or settings.workers
    if workers > 1 and settings.metrics_across_workers:
        _metrics_across_workers(settings.home)
    uvicorn.run(
        "gateway.app:create_worker_app", factory=True,  # logs as set up here, in each worker
        host=host or settings.host, port=port or settings.port,
        workers=workers,
        log_config=None,  # our JSON logging, set above
        access_log=False, timeout_graceful_shutdown=10,
    )


def _metrics_across_workers(home) -> None:
    """Several workers (HUNCH_METRICS_ACROSS_WORKERS): /metrics answers for all of them
    (prometheus-client's multiprocess mode), not for whichever worker took the scrape,
    whose counters looked to Prometheus like resets (helper-64: an events counter
    alternated 1,828 and 222). Each worker writes its numbers under one directory of
    this run, made empty here; the variable must be set before the workers import
    prometheus-client. Opt-in: every observation then goes through a memory-mapped
    file, and bench/bench_gateway.py's feed capacity fell from 332-345 to 176 req/s
    (server CPU 4.4-4.5 -> 5.3 ms a request, 2 workers, same run conditions)."""
    import os
    import shutil
    from pathlib import Path

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return  # the operator's own directory (to be emptied by them between runs)
    directory = Path(home) / "metrics-workers"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


@click.command()
@click.option("--user", "user_id", required=True, help="The user id (the token's sub).")
@click.option("--admin", is_flag=True, help="Add role: admin (internal-tool fields).")
@click.option("--hours", default=24.0, show_default=True, type=click.FloatRange(min=0.01))
def token(user_id: str, admin: bool, hours: float) -> None:
    """Print a development token signed with HUNCH_JWT_SECRET (HS256)."""
    from gateway.auth import issue_token

    click.echo(issue_token(load_settings(), user_id, admin=admin, lifetime=hours * 3600))


@click.command("export-schema")
def export_schema() -> None:
    """Print the GraphQL schema (SDL); schema.graphql at the repository root is this."""
    from gateway.schema import schema

    click.echo(schema.as_str())
