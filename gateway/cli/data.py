"""``hunch data``: generate demo data, import and export Personalize-format datasets."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.settings import load_settings


@click.group()
def data() -> None:
    """Personalize-format datasets: generate demo data, import, export."""


@data.command()
@click.option("--users", default=2000, show_default=True, type=click.IntRange(min=10))
@click.option("--polls", default=5000, show_default=True, type=click.IntRange(min=10))
@click.option("--days", default=14, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--follow-effect/--no-follow-effect", default=True, show_default=True,
              help="Plant extra engagement with polls of people a user follows.")
@click.option("--interactions", default=None, type=click.IntRange(min=1),
              help="Exact number of interactions (default: ~10 per user per day).")
@click.option("--follow-boost", default=None, type=click.FloatRange(min=0),
              help="Strength of the follow effect (default 3.0).")
@click.option("--burst-timescale", default=None, type=click.IntRange(min=60),
              help="Decay time of planted viral bursts, in seconds (default 3 hours); "
                   "each wave lasts up to 3 of them.")
@click.option("--burst-share", default=None, type=click.FloatRange(min=0, max=0.5, min_open=True),
              help="Share of interactions the planted bursts add (default 0.03).")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def generate(users: int, polls: int, days: int, seed: int, follow_effect: bool,
             interactions: int | None, follow_boost: float | None,
             burst_timescale: int | None, burst_share: float | None, out_dir: Path) -> None:
    """Write realistic demo data (Interactions, Items, Users, impressions, follows and
    the planted ground truth) to OUT_DIR. Same seed, same bytes."""
    from recsys.demo_data import generate_demo_data

    extra = {k: v for k, v in (("interactions", interactions), ("follow_boost", follow_boost),
                                 ("burst_timescale", burst_timescale),
                                 ("burst_share", burst_share)) if v is not None}
    summary = generate_demo_data(
        out_dir, users=users, polls=polls, days=days, seed=seed,
        follow_effect=follow_effect, progress=True, **extra,
    )
    click.echo(summary.describe())


@data.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--mode", type=click.Choice(["incremental", "full"]), default="incremental",
              show_default=True, help="full replaces everything stored; incremental adds.")
def import_(directory: Path, mode: str) -> None:
    """Validate DIRECTORY's CSVs and import them into the event store, all or nothing;
    deleted_polls.csv's tombstones first, so those polls stay deleted here too."""
    from recsys.amazon_items import amazon_schema_notice
    from recsys.datasets import import_directory

    settings = load_settings()
    notice = amazon_schema_notice(directory) if settings.sends_items_to_amazon else None
    if notice:
        click.echo(f"warning: {notice}", err=True)
    report = import_directory(directory, settings.event_store_url, mode=mode, progress=True,
                              rules=settings.event_rules())
    click.echo(report.describe())


@data.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export(directory: Path) -> None:
    """Write the stored datasets to DIRECTORY in Personalize's bulk CSV format, items
    with the local engine's five textual fields (so that they import back here); for
    Amazon's Items dataset, which takes one, `hunch personalize export-items`. Deleted
    polls' tombstones go to deleted_polls.csv (not an Amazon dataset): an import keeps
    their ids reserved."""
    from recsys.datasets import export_directory

    settings = load_settings()
    report = export_directory(settings.event_store_url, directory)
    click.echo(report.describe())
