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

    from gateway.production import check_production

    settings = load_settings()
    check_production(settings)  # before any worker starts: one line, exit 2
    configure_logging()
    uvicorn.run(
        "gateway.app:create_app", factory=True,
        host=host or settings.host, port=port or settings.port,
        workers=workers or settings.workers,
        log_config=None,  # our JSON logging, set above
        access_log=False, timeout_graceful_shutdown=10,
    )


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
