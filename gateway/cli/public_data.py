"""``hunch data convert-ratings``: a public ratings dataset as Personalize Interactions.

Presentation only; the conversion lives in :mod:`recsys.public_ratings`.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("convert-ratings")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--member", default=None, metavar="PATH",
              help="The ratings file inside a zip/wheel SOURCE (default: its only *.inter or u.data).")
@click.option("--min-rating", default=None, type=float,
              help="Keep only ratings at or above this (default: every rating is an interaction).")
def convert_ratings(source: Path, out_dir: Path, member: str | None,
                    min_rating: float | None) -> None:
    """Convert SOURCE (MovieLens u.data, a RecBole .inter file, or a zip/wheel holding one,
    e.g. RecBole's wheel with MovieLens 100k) to OUT_DIR/interactions.csv with EVENT_TYPE
    RATING and the rating as EVENT_VALUE."""
    from recsys.public_ratings import convert_ratings as convert

    click.echo(convert(source, out_dir, member=member, min_rating=min_rating).describe())
