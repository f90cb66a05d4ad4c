"""``hunch train`` and ``hunch recommend``: fit a recipe into a new model version, ask it.

Both default the artifact directory to the settings' ``artifacts_dir``
(``HUNCH_ARTIFACTS_PATH``, else ``<HUNCH_HOME>/artifacts``) so that the two commands and
the feed server find each other without options.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.settings import load_settings

_RECIPE_CHOICES = ["popularity-count", "trending-now", "user-personalization"]
_STEP_LABELS = {
    "load": "loading and validating the data",
    "evaluate": "computing offline metrics (90/10 user split)",
    "fit": "fitting on all the data",
    "publish": "publishing the model version",
}


def _artifact_root(path: Path | None) -> Path:
    return path if path is not None else load_settings().artifacts_dir


@click.command()
@click.option("--recipe", required=True, type=click.Choice(_RECIPE_CHOICES))
@click.option("--data", "data_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A Personalize-format data directory (interactions.csv, items.csv, ...).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A recipe parameter, e.g. trend_discovery_frequency='1 hour'. Repeatable.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where model versions are published [default: <HUNCH_HOME>/artifacts].")
@click.option("--metrics/--no-metrics", default=True, show_default=True,
              help="Compute Personalize's offline metrics (fits the recipe a second time).")
def train(recipe: str, data_dir: Path, params: tuple[str, ...], artifacts: Path | None,
          metrics: bool) -> None:
    """Fit RECIPE on a data directory and publish it as a new, immutable model version."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from recsys.training import STEPS, build_recipe, parse_params
    from recsys.training import train as train_recipe

    parsed = parse_params(params)
    build_recipe(recipe, parsed)  # a bad --param fails before any progress display
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

        manifest = train_recipe(recipe, data_dir, _artifact_root(artifacts), parsed,
                                with_metrics=metrics, progress=step)
    click.echo(f"published {manifest['recipe']} version {manifest['version']} "
               f"(data {manifest['data_fingerprint'][:12]}, "
               f"{manifest['dataset']['interactions']:,} interactions)")
    for name, value in manifest["metrics"].items():
        click.echo(f"  {name}: {value:.4f}")
    if manifest.get("metrics_note"):
        click.echo(f"  {manifest['metrics_note']}")


@click.command()
@click.option("--user", "user_id", required=True, help="The USER_ID to recommend for.")
@click.option("-n", "--num-results", "n", default=25, show_default=True,
              type=click.IntRange(1, 500), help="How many polls (Personalize allows 1-500).")
@click.option("--recipe", type=click.Choice(_RECIPE_CHOICES), default=None,
              help="[default: the most recently trained recipe]")
@click.option("--now", type=float, default=None,
              help="Epoch seconds to rank as of [default: the newest event the model saw].")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where model versions are published [default: <HUNCH_HOME>/artifacts].")
def recommend(user_id: str, n: int, recipe: str | None, now: float | None,
              artifacts: Path | None) -> None:
    """Print the top polls for a user from the newest trained model version."""
    from rich.console import Console
    from rich.table import Table

    from recsys.artifacts import ArtifactNotFound, ArtifactStore
    from recsys.serving import RecipeService

    root = _artifact_root(artifacts)
    if recipe is None:
        store = ArtifactStore(root)
        trained = [(store.latest(name), name) for name in _RECIPE_CHOICES]
        trained = [(version, name) for version, name in trained if version is not None]
        if not trained:
            raise ArtifactNotFound(f"no trained model in {root}; run "
                                   "`hunch train --recipe RECIPE --data DIR` first")
        recipe = max(trained)[1]
    event_store = _open_event_store()
    try:
        answer = RecipeService(root, event_store).recommend(recipe, user_id, n, now=now)
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
        table.add_row(str(rank), item.item_id, f"{item.score:.4f}")
    Console().print(table)
    if not answer.items:
        click.echo("no polls to recommend")


def _open_event_store():
    """The configured event store when it exists (so stored events fold in)."""
    from recsys.event_stores import is_postgres_url, open_event_store

    url = load_settings().event_store_url
    if not is_postgres_url(url) and not Path(url).exists():
        return None
    return open_event_store(url)
