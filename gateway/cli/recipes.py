"""``hunch train`` and ``hunch recommend``: fit a recipe into a new model version, ask it.

Both default the artifact store to the settings' (``HUNCH_ARTIFACTS_URL``, else
``HUNCH_ARTIFACTS_PATH``, else ``<HUNCH_HOME>/artifacts``) so that the two commands and
the feed server find each other without options. Without ``--data``, ``train`` reads the
configured event store; ``--schedule`` repeats that for a trainer host.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.settings import load_settings

_RECIPE_CHOICES = ["popularity-count", "trending-now", "user-personalization"]
# BLAS threads for `hunch train`'s fits. One: on ml-100k under a load of 6 on 2 cores,
# two OpenBLAS threads took train from 15 s to 29 s wall (8.9 s to 16 s of CPU: threads
# spinning for a core), and at this size a second thread gains little even when idle.
# A dedicated many-core trainer with a large catalog can raise it (--blas-threads).
TRAIN_BLAS_THREADS = 1
_STEP_LABELS = {
    "load": "loading and validating the data",
    "fit": "fitting on all the data",
    "publish": "publishing the model version",
    "evaluate": "computing offline metrics (90/10 user split; the model already serves)",
}


def _artifact_store(location: str | None):
    """The store given by --artifacts (a directory or s3://bucket/prefix), else the
    configured one."""
    settings = load_settings()
    if location is None:
        return settings.artifact_store()
    from recsys.artifacts import open_artifact_store

    return open_artifact_store(location, s3_endpoint_url=settings.s3_endpoint_url,
                               cache_dir=settings.artifacts_cache_path
                               or settings.home / "artifacts-cache")


@click.command()
@click.option("--recipe", "recipes", multiple=True, type=click.Choice(_RECIPE_CHOICES),
              help="Repeatable [default: every recipe].")
@click.option("--data", "data_dir", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A Personalize-format data directory (interactions.csv, items.csv, ...) "
                   "[default: what the configured event store holds].")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A recipe parameter, e.g. trend_discovery_frequency='1 hour'. Repeatable; "
                   "needs exactly one --recipe.")
@click.option("--artifacts", default=None, metavar="DIR|s3://BUCKET/PREFIX",
              help="Where model versions are published [default: HUNCH_ARTIFACTS_URL, else "
                   "HUNCH_ARTIFACTS_PATH, else <HUNCH_HOME>/artifacts].")
@click.option("--metrics/--no-metrics", default=True, show_default=True,
              help="Compute Personalize's offline metrics (fits the recipe a second time, "
                   "after every recipe is published, and records them beside each version).")
@click.option("--schedule", "every", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS",
              help="Train again every SECONDS until SIGTERM or Ctrl-C; a recipe whose data "
                   "did not change since its newest version is skipped; a failed round is "
                   "logged and retried at the next one.")
@click.option("--blas-threads", default=TRAIN_BLAS_THREADS, show_default=True,
              type=click.IntRange(min=1),
              help="BLAS threads for the fits; more only pays on a dedicated many-core "
                   "trainer with a large catalog.")
def train(recipes: tuple[str, ...], data_dir: Path | None, params: tuple[str, ...],
          artifacts: str | None, metrics: bool, every: float | None,
          blas_threads: int) -> None:
    """Fit recipes on the event store (or a data directory) and publish each as a new,
    immutable model version. From the event store every recipe is published first and
    the offline metrics (a second fit each) follow: the feed is personalized as soon as
    User-Personalization is published."""
    with blas_limited(blas_threads):
        _train(recipes, data_dir, params, artifacts, metrics, every)


def blas_limited(threads: int):
    """A context limiting every BLAS library the fits use to ``threads``."""
    from recsys.blas import limit_blas

    return limit_blas(threads)


def _train(recipes: tuple[str, ...], data_dir: Path | None, params: tuple[str, ...],
           artifacts: str | None, metrics: bool, every: float | None) -> None:
    from recsys.training import build_recipe, parse_params

    names = list(dict.fromkeys(recipes)) or list(_RECIPE_CHOICES)
    parsed = parse_params(params)
    if parsed and len(names) != 1:
        raise click.UsageError("--param applies to one recipe: give exactly one --recipe")
    for name in names:
        build_recipe(name, parsed)  # a bad --param fails before any work
    store = _artifact_store(artifacts)
    if every is not None:
        _train_on_schedule(names, data_dir, parsed, store, metrics, every)
        return
    if data_dir is None:
        for manifest in _train_round(names, None, parsed, store, metrics,
                                     announce=_report_published):
            _report_metrics(manifest)
        return
    for name in names:
        _report(_train_with_progress(name, data_dir, parsed, store, metrics))


def _report(manifest: dict) -> None:
    _report_published(manifest)
    _report_metrics(manifest, heading=False)


def _report_published(manifest: dict) -> None:
    deleted = manifest["dataset"].get("deleted_polls_left_out")
    left_out = (f"; {deleted:,} deleted polls of deleted_polls.csv left out, as training "
                "from the store leaves them out" if deleted else "")
    click.echo(f"published {manifest['recipe']} version {manifest['version']} "
               f"(data {manifest['data_fingerprint'][:12]}, "
               f"{manifest['dataset']['interactions']:,} interactions{left_out})")


def _report_metrics(manifest: dict, heading: bool = True) -> None:
    if heading:
        click.echo(f"offline metrics of {manifest['recipe']} version {manifest['version']}:")
    for name, value in manifest["metrics"].items():
        click.echo(f"  {name}: {value:.4f}")
    if manifest.get("metrics_note"):
        click.echo(f"  {manifest['metrics_note']}")


def _train_round(names: list[str], data_dir: Path | None, params: dict, store,
                 metrics: bool, skip_unchanged: bool = False,
                 announce=lambda _manifest: None) -> list[dict]:
    """One training of every recipe in ``names``: from ``data_dir``, else from one read
    of the configured event store (so every recipe learns the same events). From the
    store every recipe is published (``announce`` is called with each manifest) before
    any offline metrics are computed: they take another fit each, and the feed is
    personalized as soon as User-Personalization is published."""
    from recsys.training import read_event_store, record_offline_metrics, train_from_store
    from recsys.training import train as train_recipe

    if data_dir is not None:
        return [train_recipe(name, data_dir, store, params, with_metrics=metrics)
                for name in names]
    events = _open_event_store()
    if events is None:
        from recsys.training import NothingToTrain

        raise NothingToTrain(f"no event store at {load_settings().event_store_url}: import data "
                             "first (`hunch data import DIR`) or give --data DIR")
    try:
        snapshot = read_event_store(events)
        published = []
        for name in names:
            manifest = train_from_store(name, events, store, params, with_metrics=metrics,
                                        snapshot=snapshot, skip_unchanged=skip_unchanged,
                                        metrics_later=True)
            if manifest is not None:
                announce(manifest)
                published.append(manifest)
        if not metrics:
            return published
        return [record_offline_metrics(m, snapshot.data, store, params) for m in published]
    finally:
        events.close()


def _train_on_schedule(names: list[str], data_dir: Path | None, params: dict, store,
                       metrics: bool, every: float) -> None:
    import logging
    import signal
    import threading

    from recsys.training import run_schedule

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def on_sigterm(_signum, _frame):
        # Stop at once, even mid-round: publishing is all or nothing, so an interrupted
        # round leaves no half model behind (a directory's staging folder is removed, an
        # S3 version without its manifest does not exist).
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    click.echo(f"training {', '.join(names)} every {every:g} s into {store.location} "
               "(SIGTERM or Ctrl-C stops)", err=True)
    try:
        run_schedule(
            lambda: _train_round(names, data_dir, params, store, metrics,
                                 skip_unchanged=True),
            every, threading.Event())
    except KeyboardInterrupt:
        pass
    click.echo("training schedule stopped", err=True)


def _train_with_progress(recipe: str, data_dir: Path, parsed: dict, store,
                         metrics: bool) -> dict:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from recsys.training import STEPS
    from recsys.training import train as train_recipe

    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"{recipe}: starting", total=len(STEPS))
        done: list[str] = []

        def step(name: str) -> None:
            if done:
                progress.advance(task)
            done.append(name)
            progress.update(task, description=f"{recipe}: {_STEP_LABELS.get(name, name)}")

        return train_recipe(recipe, data_dir, store, parsed, with_metrics=metrics,
                            progress=step)


@click.command()
@click.option("--user", "user_id", required=True, help="The USER_ID to recommend for.")
@click.option("-n", "--num-results", "n", default=25, show_default=True,
              type=click.IntRange(1, 500), help="How many polls (Personalize allows 1-500).")
@click.option("--recipe", type=click.Choice(_RECIPE_CHOICES), default=None,
              help="[default: the most recently trained recipe]")
@click.option("--now", type=float, default=None,
              help="Epoch seconds to rank as of [default: the newest event the model saw].")
@click.option("--artifacts", default=None, metavar="DIR|s3://BUCKET/PREFIX",
              help="Where model versions are published [default: HUNCH_ARTIFACTS_URL, else "
                   "HUNCH_ARTIFACTS_PATH, else <HUNCH_HOME>/artifacts].")
def recommend(user_id: str, n: int, recipe: str | None, now: float | None,
              artifacts: str | None) -> None:
    """Print the top polls for a user from the newest trained model version."""
    from rich.console import Console
    from rich.table import Table

    from recsys.admission import check_user_id
    from recsys.artifacts import ArtifactNotFound
    from recsys.serving import RecipeService

    # The API's rule for user ids: " u1" or "" silently got cold-start polls, and an
    # id holding ESC sequences reached the terminal through the header line below.
    check_user_id("--user", user_id)
    store = _artifact_store(artifacts)
    if recipe is None:
        trained = [(store.latest(name), name) for name in _RECIPE_CHOICES]
        trained = [(version, name) for version, name in trained if version is not None]
        if not trained:
            raise ArtifactNotFound(f"no trained model in {store.location}; run "
                                   "`hunch train --recipe RECIPE --data DIR` first")
        recipe = max(trained)[1]
    event_store = _open_event_store()
    try:
        answer = RecipeService(store, event_store).recommend(recipe, user_id, n, now=now)
    finally:
        if event_store is not None:
            event_store.close()
    why = f" ({answer.reason})" if answer.reason else ""
    click.echo(f"{answer.recipe} version {answer.version} for user {user_id}{why}")
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("poll")
    table.add_column("score", justify="right")
    for rank, item in enumerate(answer.items, 1):
        # Poll ids of stores older releases filled may hold anything: shown escaped.
        table.add_row(str(rank), item.item_id if item.item_id.isprintable()
                      else repr(item.item_id), f"{item.score:.4f}")
    Console().print(table)
    if not answer.items:
        click.echo("no polls to recommend")


def _open_event_store():
    """The configured event store when it exists (so stored events fold in)."""
    from recsys.event_stores import open_event_store, store_exists

    url = load_settings().event_store_url
    if not store_exists(url):  # a sqlite:// URL too
        return None
    return open_event_store(url)
