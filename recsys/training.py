"""Training: a data directory in, a published solution version out.

``train`` loads and validates a Personalize-format directory, fits the recipe with the
given parameters, publishes the model with its manifest through
:class:`~recsys.artifacts.ArtifactStore`, and then computes Personalize's offline metrics
for exactly those parameters (Personalize's 90/10 user split, via
:mod:`recsys.evaluation`) and records them beside the version.

The published model is fitted on all the data, as Personalize does for a solution
version; the metrics need a separate fit (held-out users' newest events hidden), as long
again, so they come after publishing: servers swap the new model in while its metrics
are computed. When the data cannot be split (too few users) the metrics are left empty
with a note saying why, rather than failing the training.

:func:`train_from_store` trains on what an event store holds instead (several hosts: the
shared store), and :func:`run_schedule` repeats training rounds until told to stop.
"""

from __future__ import annotations

import gc
import hashlib
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys.artifacts import ArtifactStore, VersionStore, recipe_class
from recsys.errors import HunchError
from recsys.events import Impression, Interaction, deleted_poll_ids, without_polls
from recsys.recipes.base import TrainingData, fit_summary
from recsys.recipes.clock import robust_newest

# Steps reported to ``progress`` in this order.
STEPS: tuple[str, ...] = ("load", "fit", "publish", "evaluate")
# The manifest's note while a version's offline metrics are still being computed.
METRICS_PENDING = "offline metrics: computed after publishing, recorded beside the version"
# Personalize scores the top 25, its default numResults.
_EVALUATION_DEPTH = 25


log = logging.getLogger(__name__)
# Events read from the event store per query while loading training data.
_STORE_PAGE = 50_000


class InvalidTrainingParameter(HunchError):
    """A ``--param`` the recipe does not take, or one written wrongly."""


class NothingToTrain(HunchError):
    """The event store holds no interactions yet."""


def parse_params(pairs: Iterable[str]) -> dict[str, Any]:
    """``["key=value", ...]`` to a dict; values become int, float, bool or null when they
    read as such ("1", "0.5", "true", "none"), else stay strings ("3 hours")."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidTrainingParameter(f"--param {pair!r}: write it as key=value")
        out[key] = _parse_value(raw.strip())
    return out


def _parse_value(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def build_recipe(recipe_name: str, params: Mapping[str, Any]) -> Any:
    """An unfitted recipe with ``params``; unknown parameters are named with the choices."""
    cls = recipe_class(recipe_name)
    signature = inspect.signature(cls)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    accepted = [name for name, p in signature.parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in params if k not in accepted]
    if unknown and not takes_any:
        raise InvalidTrainingParameter(
            f"{recipe_name} takes no parameter {', '.join(sorted(unknown))}; "
            f"it takes: {', '.join(accepted) or 'none'}"
        )
    return cls(**params)


def offline_metrics(recipe_name: str, params: Mapping[str, Any], data: TrainingData,
                    seed: int = 0) -> tuple[dict[str, float], str | None]:
    """Personalize's offline metrics for the recipe with ``params``, and a note when they
    could not be computed (then the dict is empty)."""
    try:
        from recsys.evaluation.metrics import PERSONALIZE_METRICS, coverage, user_metrics
        from recsys.evaluation.split import EvaluationSplitError, personalize_split
    except ImportError as exc:  # evaluation is optional for training
        return {}, f"offline metrics unavailable: {exc}"
    try:
        split = personalize_split(data.interactions, seed=seed)
    except EvaluationSplitError as exc:
        return {}, f"offline metrics skipped: {exc}"
    users = split.scored_users
    if not users:
        return {}, "offline metrics skipped: no held-out user has a poll to predict"
    evaluated = dict(params)
    if "exploration_weight" in inspect.signature(recipe_class(recipe_name)).parameters:
        # Personalize scores a solution version before a campaign's exploration applies;
        # the random exploration bonus would only blur the numbers.
        evaluated["exploration_weight"] = 0.0
    model = build_recipe(recipe_name, evaluated).fit(TrainingData(
        interactions=list(split.training), items=data.items, users=data.users,
        impressions=split.training_impressions(data.impressions),
    ))
    lists = [[s.item_id for s in model.recommend(u.user_id, _EVALUATION_DEPTH,
                                                 exclude=u.input_items)] for u in users]
    per_user = [user_metrics(ranked, u.relevant_items) for ranked, u in zip(lists, users)]
    catalog = set(data.items) | {e.item_id for e in data.interactions}
    metrics = {"coverage": coverage(lists, len(catalog))}
    for name in PERSONALIZE_METRICS:
        if name != "coverage":
            metrics[name] = float(np.mean([p[name] for p in per_user]))
    return metrics, None


def _store(artifacts: Path | str | VersionStore) -> VersionStore:
    return ArtifactStore(artifacts) if isinstance(artifacts, (Path, str)) else artifacts


def train(
    recipe_name: str,
    data_dir: Path | str,
    artifact_root: Path | str | VersionStore,
    params: Mapping[str, Any] | None = None,
    *,
    with_metrics: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit ``recipe_name`` on ``data_dir`` and publish it; returns the manifest."""
    from recsys.datasets import load_directory

    params = dict(params or {})
    step = progress or (lambda _name: None)
    build_recipe(recipe_name, params)  # bad parameters fail before the slow load

    step("load")
    # Its deleted polls (deleted_polls.csv) left out, as from the store: the counts
    # below are what the recipe learns.
    datasets = load_directory(data_dir).without_deleted()
    if not datasets.interactions:  # as from the store: no recipe is published empty
        raise NothingToTrain(f"{data_dir} holds no interactions (interactions.csv has no "
                             "rows, or only rows of deleted polls): add some, or train on "
                             "the event store")
    extra: dict[str, Any] = {
        "data_dir": str(Path(data_dir).resolve()),
        "dataset": {"interactions": len(datasets.interactions),
                    "items": len(datasets.items), "users": len(datasets.users),
                    "impressions": len(datasets.impressions)},
    }
    if datasets.deletions:
        extra["dataset"]["deleted_polls_left_out"] = len(datasets.deletions)
    return _fit_and_publish(recipe_name, datasets.training_data(), datasets.fingerprint,
                            _store(artifact_root), params, extra, with_metrics, step)


@dataclass(frozen=True)
class StoreSnapshot:
    """What an event store held up to one event sequence number, as training data."""

    data: TrainingData
    event_seq: int  # the newest event included: serving tails the store from here
    fingerprint: str
    # The catalog's sequence number before its polls were read: serving adds the polls
    # written after it (new or edited) to the model it loads, on any worker, at any time.
    catalog_seq: int | None = None


def read_event_store(events: Any) -> StoreSnapshot:
    """Every event stored up to now (the store's sequence number read first, so events
    arriving meanwhile are left to serving's tail, never trained on *and* tailed), plus
    the catalog and users."""
    upto = events.last_seq()
    catalog_seq = events.catalog_seq() if hasattr(events, "catalog_seq") else None
    digest = hashlib.blake2b(digest_size=16)
    interactions, impressions = [], []
    seq = 0
    while seq < upto:
        batch = events.events_since(seq, _STORE_PAGE)
        if not batch:
            break
        for number, event in batch:
            if number > upto:
                break
            digest.update(event.event_id.encode() + b"\0")
            (interactions if isinstance(event, Interaction) else impressions).append(event)
        seq = batch[-1][0]
    # Deleted polls are neither learned nor recommended: their events stay stored
    # (history), but training reads them as if the poll had never been.
    deleted = deleted_poll_ids(events)
    digest.update(json.dumps(sorted(deleted)).encode())
    interactions, impressions = _without_polls(interactions, impressions, deleted)
    # Recipes learn in time order; the sort is stable, so ties stay in store order.
    interactions.sort(key=lambda e: e.timestamp)
    impressions.sort(key=lambda e: e.timestamp)
    items = {r["ITEM_ID"]: r for r in events.items()}
    users = {r["USER_ID"]: r for r in events.users()}
    for record in (items, users):
        digest.update(json.dumps(record, sort_keys=True, default=str).encode())
    return StoreSnapshot(TrainingData(interactions, items, users, impressions), upto,
                         digest.hexdigest(), catalog_seq)


def _without_polls(interactions: list[Interaction], impressions: list[Impression],
                   polls: set[str]) -> tuple[list[Interaction], list[Impression]]:
    """The events as if ``polls`` had never been (:func:`without_polls`)."""
    if not polls:
        return interactions, impressions
    return list(without_polls(interactions, polls)), list(without_polls(impressions, polls))


def train_from_store(
    recipe_name: str,
    events: Any,
    artifacts: Path | str | VersionStore,
    params: Mapping[str, Any] | None = None,
    *,
    with_metrics: bool = True,
    progress: Callable[[str], None] | None = None,
    snapshot: StoreSnapshot | None = None,
    skip_unchanged: bool = False,
    metrics_later: bool = False,
) -> dict[str, Any] | None:
    """Fit ``recipe_name`` on what the event store ``events`` holds and publish it; the
    manifest's ``event_seq`` tells serving where to tail from. ``snapshot`` reuses one
    read of the store for several recipes. With ``skip_unchanged`` (scheduled training),
    nothing is trained and None returned when the newest version was trained on the same
    data with the same parameters: every gateway would only swap in an identical model.
    With ``metrics_later`` the metrics are left to the caller
    (:func:`record_offline_metrics`), so that several recipes are all published first."""
    params = dict(params or {})
    step = progress or (lambda _name: None)
    build_recipe(recipe_name, params)
    step("load")
    snap = snapshot if snapshot is not None else read_event_store(events)
    data = snap.data
    if not data.interactions:
        raise NothingToTrain(f"{events!r} holds no interactions yet: import data "
                             "(`hunch data import DIR`) or wait for events")
    store = _store(artifacts)
    if skip_unchanged and _unchanged(store, recipe_name, snap.fingerprint, params):
        return None
    extra: dict[str, Any] = {
        "event_store": repr(events),
        "event_seq": snap.event_seq,
        "catalog_seq": snap.catalog_seq,
        "dataset": {"interactions": len(data.interactions), "items": len(data.items),
                    "users": len(data.users), "impressions": len(data.impressions)},
    }
    return _fit_and_publish(recipe_name, data, snap.fingerprint, store, params, extra,
                            with_metrics, step, metrics_later)


def _unchanged(store: VersionStore, recipe_name: str, fingerprint: str,
               params: Mapping[str, Any]) -> bool:
    newest = store.latest(recipe_name)
    if newest is None:
        return False
    manifest = store.manifest(recipe_name, newest)
    trained_with = manifest.get("parameters") or {}
    return (manifest.get("data_fingerprint") == fingerprint
            and all(trained_with.get(k) == v for k, v in params.items()))


@contextmanager
def loaded_data_frozen() -> Iterator[None]:
    """Keep what the process holds now (the loaded training data: millions of event
    objects) out of the garbage collector's full passes while a fit runs.

    The events live as long as the fit and form no reference cycles, yet a full pass walks
    every one: at 1.5M interactions and 750k impression events (2.35M objects) it took
    1.3 s, and one fell due during the fit in most runs (session 33). ``gc.freeze`` moves
    the objects that exist now into a generation the collector skips; what the fit makes
    is collected as usual, and ``gc.unfreeze`` gives the rest back afterwards. Left alone
    when something else already froze objects: that is its decision to undo."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _fit_and_publish(recipe_name: str, data: TrainingData, fingerprint: str,
                     store: VersionStore, params: dict[str, Any], extra: dict[str, Any],
                     with_metrics: bool, step: Callable[[str], None],
                     metrics_later: bool = False) -> dict[str, Any]:
    step("fit")
    with loaded_data_frozen():
        model = build_recipe(recipe_name, params).fit(data)

    step("publish")
    # Robust to a stray future timestamp: with the plain maximum, one event from 2100
    # made serving treat every later real event as one the model had already learned.
    extra = {"trained_until": robust_newest(e.timestamp for e in data.interactions), **extra,
             "metrics_note": METRICS_PENDING if with_metrics else "offline metrics not requested"}
    # What the fit chose on its own validation split (User-Personalization: the blend,
    # whether history twins are on, item-item's lambda, the walk's beta), for operators.
    chosen = fit_summary(model)
    if chosen is not None:
        extra["fit"] = chosen
    version = store.publish(recipe_name, model, _effective_params(model, params),
                            fingerprint, {}, extra=extra)
    manifest = store.manifest(recipe_name, version)
    del model  # the metrics' own fit need not sit beside it in memory
    if not with_metrics or metrics_later:
        return manifest
    return record_offline_metrics(manifest, data, store, params, step)


def record_offline_metrics(manifest: dict[str, Any], data: TrainingData, store: VersionStore,
                           params: Mapping[str, Any] | None = None,
                           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compute the offline metrics of the published version ``manifest`` describes (its
    recipe trained with ``params`` on ``data``), record them beside the version and
    return the manifest with them filled in."""
    (progress or (lambda _name: None))("evaluate")
    recipe_name, version = manifest["recipe"], manifest["version"]
    metrics, note = offline_metrics(recipe_name, params or {}, data)
    store.record_metrics(recipe_name, version, metrics, note)
    completed = {**manifest, "metrics": metrics}
    completed.pop("metrics_note", None)
    return {**completed, "metrics_note": note} if note else completed


def run_schedule(train_round: Callable[[], Sequence[dict[str, Any]]], every_seconds: float,
                 stop: threading.Event, *, max_rounds: int | None = None) -> int:
    """Call ``train_round`` every ``every_seconds`` (start to start; at once when a round
    took longer) until ``stop`` is set; returns how many rounds succeeded. A round that
    raises is logged and the next round tries again: publishing is all or nothing, so a
    failed or interrupted round never leaves half a model for servers to load."""
    succeeded = rounds = 0
    while not stop.is_set():
        started = time.monotonic()
        rounds += 1
        try:
            published = train_round()
        except HunchError as exc:  # says what to fix: one line, no traceback
            log.error("training round %d failed: %s; retrying in %g s", rounds, exc,
                      every_seconds)
        except Exception:  # noqa: BLE001 - logged; the schedule goes on
            log.exception("training round %d failed; retrying in %g s", rounds, every_seconds)
        else:
            succeeded += 1
            for manifest in published:
                log.info("round %d published %s version %s", rounds, manifest["recipe"],
                         manifest["version"])
            if not published:
                log.info("round %d: no new data since the newest versions", rounds)
        if max_rounds is not None and rounds >= max_rounds:
            break
        stop.wait(max(0.0, every_seconds - (time.monotonic() - started)))
    return succeeded


def _effective_params(model: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters the model runs with (its defaults included) when it can say."""
    params = getattr(model, "params", None)
    return dict(params()) if callable(params) else dict(given)
