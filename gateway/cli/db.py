"""``hunch db upgrade``: bring the configured stores' schemas up to this code's."""

from __future__ import annotations

import click

from gateway.settings import load_settings


@click.group()
def db() -> None:
    """The stores' database (HUNCH_STORE_URL): events, named filters, promotions."""


@db.command()
def upgrade() -> None:
    """Apply pending schema migrations; safe while other hosts run or upgrade too."""
    from recsys.event_stores import describe_url, upgrade_stores

    url = load_settings().event_store_url
    versions = upgrade_stores(url)
    click.echo(f"{describe_url(url)} schema versions:")
    for component, version in versions.items():
        click.echo(f"  {component}: {version}")
