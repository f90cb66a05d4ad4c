"""``hunch demo``: the embedded default end to end on one laptop.

Generates demo data (once), imports it into the event store and prints a summary.
As the recipes and the gateway land, it trains them and serves the feed.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.settings import load_settings


@click.command()
@click.option("--users", default=2000, show_default=True, type=click.IntRange(min=10))
@click.option("--polls", default=5000, show_default=True, type=click.IntRange(min=10))
@click.option("--days", default=14, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=1, show_default=True, type=int)
def demo(users: int, polls: int, days: int, seed: int) -> None:
    """Generate demo data, import it, and show what the engine holds."""
    from recsys.datasets import import_directory
    from recsys.demo_data import generate_demo_data

    settings = load_settings()
    data_dir = Path(settings.home) / "demo-data"
    if not (data_dir / "interactions.csv").exists():
        summary = generate_demo_data(data_dir, users=users, polls=polls, days=days, seed=seed,
                                     progress=True)
        click.echo(summary.describe())
    report = import_directory(data_dir, settings.events_db, mode="full", progress=True)
    click.echo(report.describe())
