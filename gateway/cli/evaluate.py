"""``hunch evaluate``: our recipes against peer baselines on Personalize's offline split.

Presentation only; the protocol lives in recsys/evaluation. Progress bars go to stderr
so that ``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# Exit status when any model failed (the report is still printed, for its other numbers).
FAILED_MODEL_EXIT_CODE = 1

# Short column titles for Personalize's metric names, in its order.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("coverage", "cov"),
    ("mean_reciprocal_rank_at_25", "MRR@25"),
    ("normalized_discounted_cumulative_gain_at_5", "NDCG@5"),
    ("normalized_discounted_cumulative_gain_at_10", "NDCG@10"),
    ("normalized_discounted_cumulative_gain_at_25", "NDCG@25"),
    ("precision_at_5", "P@5"),
    ("precision_at_10", "P@10"),
    ("precision_at_25", "P@25"),
    ("recall_at_25", "R@25"),
)


class _RichProgress:
    """One bar per fold, advancing as each model finishes."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[int, int] = {}

    def fold_started(self, fold: int, folds: int, models: Sequence[str]) -> None:
        self.tasks[fold] = self.progress.add_task(f"fold {fold + 1}/{folds}", total=len(models))

    def model_finished(self, fold: int, model: str) -> None:
        self.progress.update(self.tasks[fold], advance=1,
                             description=f"fold {fold + 1}: {model} done")


def _fmt(estimate: dict | None, with_ci: bool = True) -> str:
    if not estimate or estimate.get("mean") is None:
        return "-"
    text = f"{estimate['mean']:.4f}"
    if with_ci and estimate.get("ci_low") is not None:
        text += f"\n[{estimate['ci_low']:.3f}, {estimate['ci_high']:.3f}]"
    return text


def render(report: dict, console: Console) -> None:
    """Print the tables of a report in its JSON shape (see recsys.evaluation.evaluate)."""
    protocol, dataset = report["protocol"], report["dataset"]
    title = (f"{protocol['split']} split, {protocol['folds']} fold(s), seed {protocol['seed']}: "
             f"{dataset['users']:,} users, {dataset['items']:,} polls, "
             f"{dataset['interactions']:,} interactions; mean [95% CI over held-out users]")
    if protocol.get("event_values"):
        from recsys.event_values import EventValues

        title += f"; trained on {EventValues.coerce(protocol['event_values']).describe()}"
    table = Table(title=title, show_lines=True)
    table.add_column("model")
    for _, short in _COLUMNS:
        table.add_column(short, justify="right")
    table.add_column("fit s", justify="right")
    table.add_column("tune s", justify="right")
    for m in report["models"]:
        if m["status"] != "ok":
            continue
        table.add_row(m["key"], *[_fmt(m["metrics"].get(k)) for k, _ in _COLUMNS],
                      f"{m['fit_seconds']:.2f}", f"{m['tune_seconds']:.2f}")
    console.print(table)

    if protocol["folds"] > 1:
        per_fold = Table(title="NDCG@10 per fold")
        per_fold.add_column("model")
        for f in report["folds"]:
            per_fold.add_column(f"fold {f['fold'] + 1}", justify="right")
        for m in report["models"]:
            if m["status"] == "ok":
                per_fold.add_row(m["key"], *[
                    f"{pf['metrics']['normalized_discounted_cumulative_gain_at_10']:.4f}"
                    for pf in m["per_fold"]])
        console.print(per_fold)
    for m in report["models"]:
        line = _fit_choices(m)
        if line:
            console.print(line)

    slices = Table(title="slices: cold polls (<{} training interactions), cold users (<{} input "
                         "events), heavy users (>= {:g} events)".format(
                             protocol["cold_poll_max_training_interactions"],
                             protocol["cold_user_max_input_events"],
                             protocol["heavy_user_min_events"]))
    slices.add_column("model")
    for name in ("cold polls R@25", "cold users NDCG@10", "cold users R@25",
                 "heavy users NDCG@10", "heavy users R@25"):
        slices.add_column(name, justify="right")
    for m in report["models"]:
        if m["status"] != "ok":
            continue
        s = m["slices"]
        slices.add_row(
            m["key"], _fmt(s["cold_polls"]["recall_at_25"]),
            _fmt(s["cold_users"]["normalized_discounted_cumulative_gain_at_10"]),
            _fmt(s["cold_users"]["recall_at_25"]),
            _fmt(s["heavy_users"]["normalized_discounted_cumulative_gain_at_10"]),
            _fmt(s["heavy_users"]["recall_at_25"]),
        )
    console.print(slices)
    users = {m["key"]: m["slices"]["cold_polls"]["recall_at_25"]["users"]
             for m in report["models"] if m["status"] == "ok"}
    if users:
        console.print(f"cold-poll slice: {max(users.values())} held-out user(s) with a cold relevant poll")

    comparison = report["comparison"]
    if comparison is None:
        console.print("UP / best peer: not available (user-personalization or every peer was not run)")
    else:
        ratio, diff = comparison["ratio"], comparison["difference"]
        ci = (f" (95% CI {ratio['ci_low']:.3f} to {ratio['ci_high']:.3f})"
              if ratio.get("ci_low") is not None else "")
        ratio_text = "n/a" if ratio["mean"] is None else f"{ratio['mean']:.3f}"
        console.print(
            f"UP / best peer ({comparison['best_peer']}, the best of "
            f"{len(comparison['peers'])} peer configuration(s) on the test folds) "
            f"NDCG@10 = {ratio_text}{ci}; "
            f"paired difference {_fmt(diff).replace(chr(10), ' ')}"
        )
    text = report["text_on_cold_polls"]
    if text is not None:
        console.print(
            "cold polls R@25, UP with text vs without: "
            f"{_fmt(text['with_text'], False)} vs {_fmt(text['without_text'], False)}, "
            f"paired difference {_fmt(text['difference']).replace(chr(10), ' ')}"
        )
    among_cold = report["text_on_cold_candidates"]
    if among_cold is not None:
        ratio = among_cold["ratio"]
        ratio_text = "n/a" if ratio["mean"] is None else f"{ratio['mean']:.3f}"
        console.print(
            "cold polls ranked among cold polls only, R@25, UP with text vs without: "
            f"{_fmt(among_cold['with_text'], False)} vs {_fmt(among_cold['without_text'], False)}, "
            f"ratio {ratio_text}, paired difference "
            f"{_fmt(among_cold['difference']).replace(chr(10), ' ')}"
        )
    contributions = report.get("contributions") or []
    if contributions:
        table = Table(title="what each User-Personalization component adds: NDCG@10 of UP "
                            "minus UP without it, paired per user [95% CI]")
        for name in ("component", "UP", "UP without it", "contribution"):
            table.add_column(name, justify="left" if name == "component" else "right")
        for c in contributions:
            table.add_row(c["component"], _fmt(c["with"], False), _fmt(c["without"], False),
                          _fmt(c["difference"]).replace(chr(10), " "))
        console.print(table)
    for note in report["notes"]:
        console.print(f"note: {note}")


def _fit_choices(model: dict) -> str | None:
    """One line on what a recipe's own fit chose per fold (UP's fit summary), or None."""
    fits = [pf.get("fit") for pf in model.get("per_fold", [])]
    if not fits or not all(fits) or "history_twins" not in fits[0]:
        return None
    on = [str(k + 1) for k, f in enumerate(fits) if f["history_twins"]]
    users = [f["validation_users"] for f in fits]
    betas = sorted({f["walk_beta"] for f in fits})
    return (f"{model['key']}'s fit chose: history twins in {len(on)} of {len(fits)} fold(s)"
            + (f" ({', '.join(on)})" if on else "")
            + f"; {min(users)}-{max(users)} validation users; walk beta "
            + ", ".join(f"{b:g}" for b in betas))


# No run has this many folds; a bound keeps "1-10000000000" from building a huge set.
MAX_FOLD_NUMBER = 10_000


def parse_fold_list(text: str) -> list[int]:
    """``1-5`` or ``2,4,6`` (1-based, as printed) into 0-based fold numbers."""
    folds: set[int] = set()
    if not text.strip():
        raise click.BadParameter("an empty list: name the folds to measure, e.g. 1-5",
                                 param_hint="--only-folds")
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a fold number or a range such as 1-5",
                                     param_hint="--only-folds") from None
        if first < 1 or last < first:
            raise click.BadParameter(f"{part!r}: folds count from 1, a range low to high",
                                     param_hint="--only-folds")
        if last > MAX_FOLD_NUMBER:
            raise click.BadParameter(f"{part!r}: no run has more than {MAX_FOLD_NUMBER:,} folds",
                                     param_hint="--only-folds")
        folds.update(range(first - 1, last))
    return sorted(folds)


@click.command()
@click.option("--data", "data_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A Personalize-format directory (interactions.csv, items.csv, users.csv).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (stable shape).")
@click.option("--split", type=click.Choice(["personalize", "temporal"]), default="personalize",
              show_default=True, help="personalize: 10% of users held out; temporal: one cut-off.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--folds", default=1, show_default=True, type=click.IntRange(min=1),
              help="1 = Personalize's single split; K >= 2 holds every user out once.")
@click.option("--models", default="", metavar="LIST",
              help="Comma-separated: up,up-notext,popularity-count,trending-now,ease,als,bpr,"
                   "item-knn,rp3beta,most-popular,random (default: all). A peer's name runs "
                   "its tuned and textbook configurations (e.g. ease = ease, "
                   "ease-textbook-200, ease-textbook-500); a configuration's key runs it alone.")
@click.option("--ease-max-items", default=None, type=click.IntRange(min=1),
              help="Skip EASE above this catalog size (default 20,000).")
@click.option("--tuning-folds", default=None, type=click.IntRange(min=1),
              help="Inner folds of each fold's training users that tuned peers are scored "
                   "on, pooled (default 3).")
@click.option("--event-value-threshold", default="", metavar="TYPE=VALUE,...",
              help="Train only on events whose EVENT_VALUE is at least their type's "
                   "threshold (Personalize's eventValueThreshold), e.g. RATING=4.")
@click.option("--ablate", multiple=True, metavar="COMPONENT",
              help="Also run User-Personalization without this component (repeatable: "
                   "collaborative, content, popularity, segments, item_item, recency, "
                   "exploration, sequence) and print each one's contribution to NDCG@10 (UP "
                   "runs too, on the same folds).")
@click.option("--checkpoint", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep each finished fold in this directory and resume from it: the same "
                   "command continues an interrupted run (same data, options and code only).")
@click.option("--only-folds", default=None, metavar="LIST",
              help="Measure only these folds (e.g. 1-5 or 2,4,6) and keep them in "
                   "--checkpoint, printing no result: several processes, each with its own "
                   "folds, share one checkpoint; the command without --only-folds reports.")
@click.option("--event-value-confidence", type=click.Choice(["none", "value", "log"]),
              default="none", show_default=True,
              help="Weigh each training event by its EVENT_VALUE (value) or 1 + log of it.")
def evaluate(data_dir: Path, as_json: bool, split: str, seed: int, folds: int, models: str,
             ease_max_items: int | None, tuning_folds: int | None, event_value_threshold: str,
             event_value_confidence: str, ablate: tuple[str, ...],
             checkpoint: Path | None, only_folds: str | None) -> None:
    """Evaluate our recipes and peer baselines on DATA with Personalize's offline metrics."""
    from recsys.datasets import load_directory
    from recsys.demo_data import read_comments
    from recsys.evaluation import EASE_MAX_ITEMS, evaluate as run_evaluation, parse_models
    from recsys.evaluation.checkpoint import directory_digest
    from recsys.evaluation.evaluate import TUNING_FOLDS, FoldsKept, ablation_keys

    from recsys.event_values import EventValues

    parse_models(models)  # fail on a typo before loading anything
    ablation_keys(ablate)
    event_values = EventValues.parse(event_value_threshold, event_value_confidence)
    chosen_folds = parse_fold_list(only_folds) if only_folds is not None else None
    if chosen_folds is not None and checkpoint is None:
        raise click.UsageError("--only-folds keeps its folds for a later run to report: "
                               "it needs --checkpoint DIR")
    # Deleted polls (deleted_polls.csv) are left out, as training leaves them out.
    datasets = load_directory(data_dir).without_deleted()
    if datasets.deletions:
        click.echo(datasets.left_out_note(), err=as_json)  # JSON on stdout stays JSON
    data = datasets.training_data()
    progress_console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=progress_console, transient=True) as bars:
        try:
            report = run_evaluation(
                data, split=split, folds=folds, seed=seed, models=models or None,
                ease_max_items=ease_max_items or EASE_MAX_ITEMS, progress=_RichProgress(bars),
                comment_texts=read_comments(data_dir), tuning_folds=tuning_folds or TUNING_FOLDS,
                event_values=event_values, ablate=ablate, checkpoint=checkpoint,
                data_identity=directory_digest(data_dir) if checkpoint is not None else None,
                only_folds=chosen_folds,
            )
        except FoldsKept as kept:
            click.echo(str(kept), err=True)
            return
    shape = report.to_json()
    # What the numbers were measured without (the note above, for scripts): a run whose
    # numbers moved after polls were deleted must not read as the same data.
    shape["left_out"] = datasets.left_out_counts()
    if as_json:
        click.echo(json.dumps(shape, indent=2))
    else:
        render(shape, Console(width=200))
    failed = [m for m in shape["models"] if m["status"] == "failed"]
    if failed:
        # A run with a failed model is not a result: scripts and CI must notice, and the
        # table above would otherwise read as a complete comparison.
        for m in failed:
            click.echo(f"error: {m['note']}", err=True)
        raise SystemExit(FAILED_MODEL_EXIT_CODE)
