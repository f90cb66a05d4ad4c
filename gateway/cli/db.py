"""``hunch db upgrade``: bring the configured event store's schema up to this code's."""

from __future__ import annotations

import click

from gateway.settings import load_settings


@click.group()
def db() -> None:
    """The event store's database (HUNCH_STORE_URL)."""


@db.command()
def upgrade() -> None:
    """Apply pending schema migrations; safe while other hosts run or upgrade too."""
    from recsys.event_stores import describe_url, upgrade_event_store
    from recsys.filters import open_filter_store
    from recsys.promotions import open_promotion_store

    url = load_settings().event_store_url
    versions = upgrade_event_store(url)
    # The named filters and promotions live in the same database with schemas of their
    # own: a gateway refuses to start on an outdated one, so they are upgraded here too.
    for open_store in (open_filter_store, open_promotion_store):
        open_store(url, upgrade=True).close()
    click.echo(f"{describe_url(url)} schema versions:")
    for component, version in versions.items():
        click.echo(f"  {component}: {version}")
    click.echo("  filters, promotions: up to date")
