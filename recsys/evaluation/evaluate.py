"""Offline evaluation: our recipes against peer baselines, on one split, honestly.

Every model of a run sees the same folds and the same events. Held-out users' input
events reach peers as rows of the training matrix and our recipes as part of their
:class:`~recsys.recipes.base.TrainingData` (not through ``observe``): both learn from
exactly the same events, and a recipe need not support streaming to be evaluated.
Polls a held-out user already touched are excluded from every model's list, as a feed
would. Hyperparameters (ALS grid, EASE's lambda and weighting) are chosen inside each
fold on inner folds of that fold's training users only (:data:`TUNING_FOLDS`, pooled).
Each tuned peer also runs in textbook configurations (:data:`TEXTBOOK_PEERS`), and UP is
compared with the best configuration of any peer on the test folds.

``EvaluationReport.to_json()`` is the stable machine-readable shape
(``schema_version`` 1); ``report.schema.json`` beside this module is its JSON Schema
(:func:`report_json_schema`), which tools can validate against (``hunch evaluate
--json`` adds ``left_out``: what the directory's deleted polls took out). In outline::

    {
      "schema_version": 1,
      "dataset": {"users": int, "items": int, "interactions": int},
      "protocol": {"split": "personalize"|"temporal", "folds": int, "seed": int,
                   "confidence_level": 0.95, "bootstrap_samples": int,
                   "cold_poll_max_training_interactions": int,
                   "cold_user_max_input_events": int, "heavy_user_min_events": float},
      "folds": [{"fold": int, "training_interactions": int, "held_out_users": int,
                 "scored_users": int, "cutoff": int|null}],
      "models": [{
          "key": str, "name": str, "kind": "recipe"|"peer",
          "family": str|null, "configuration": "tuned"|"textbook"|"default"|null,
          "status": "ok"|"skipped"|"failed", "note": str|null,
          "fit_seconds": float, "tune_seconds": float,      # summed over folds
          "hyperparameters": [{...} per fold],
          "metrics": {<metric>: {"mean": float|null, "ci_low": float|null,
                                 "ci_high": float|null, "users": int}},
          "per_fold": [{"fold": int, "fit_seconds": float, "tune_seconds": float,
                        "metrics": {<metric>: float},
                        "fit": {...}|null}],   # what a recipe's fit chose (UP: fit_summary)
          "slices": {"cold_polls": {"recall_at_25": <estimate>},
                     "cold_candidates": {"recall_at_25": <estimate>},  # among cold polls only
                     "cold_users": {"normalized_discounted_cumulative_gain_at_10": <estimate>,
                                    "recall_at_25": <estimate>},
                     "heavy_users": {same as cold_users}}
      }],
      "comparison": null | {"model": "up", "best_peer": str, "peers": [str],
                            "metric": "normalized_discounted_cumulative_gain_at_10",
                            "ratio": <estimate>, "difference": <estimate>},
      "text_on_cold_polls": null | {"with_text": <estimate>, "without_text": <estimate>,
                                    "difference": <estimate>},
      "text_on_cold_candidates": null | {"with_text": <estimate>, "without_text": <estimate>,
                                         "difference": <estimate>, "ratio": <estimate>},
      "contributions": [{"component": str, "model": str, "metric": str,
                         "with": <estimate>, "without": <estimate>,
                         "difference": <estimate>}],   # only with --ablate, one per NAME
      "notes": [str]
    }

``<metric>`` is each of Personalize's names (``coverage``,
``mean_reciprocal_rank_at_25``, ``normalized_discounted_cumulative_gain_at_{5,10,25}``,
``precision_at_{5,10,25}``) plus ``recall_at_25``; coverage has no interval (it is a
property of all lists together; its mean is over folds). Skipped and failed models carry empty
``metrics``, ``per_fold`` and ``slices``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import json
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.model_selection import ParameterGrid
from threadpoolctl import threadpool_limits

from recsys.errors import HunchError
from recsys.evaluation import metrics as M
from recsys.evaluation.checkpoint import FoldCheckpoint, code_digest
from recsys.evaluation.intervals import (
    BOOTSTRAP_SAMPLES,
    CONFIDENCE_LEVEL,
    Estimate,
    mean_interval,
    paired_difference,
    paired_ratio,
)
from recsys.evaluation.peers import (
    ALS,
    BPR,
    EASE,
    EASE_MAX_ITEMS,
    ItemKNN,
    ItemKNNShrunk,
    MostPopular,
    Peer,
    PeerSkipped,
    RandomPolls,
    RP3beta,
    UserItemMatrix,
    ease_grid_rankings,
)
from recsys.evaluation.split import (
    EvaluationSplit,
    EvaluationSplitError,
    HeldOutUser,
    temporal_split,
    user_folds,
    validation_folds,
)
from recsys.datasets import clean_text
from recsys.demo_data import comments_field
from recsys.event_values import EventValues
from recsys.events import Interaction
from recsys.recipes.base import TrainingData, fit_summary

SCHEMA_VERSION = 1
REPORT_SCHEMA_FILE = "report.schema.json"
# A poll with fewer training interactions than this is "cold": collaborative signals
# are too thin to place it, so only metadata (text, category, author) can.
COLD_POLL_MAX_TRAINING_INTERACTIONS = 5
# A user with fewer input events than this is "cold" for the same reason.
COLD_USER_MAX_INPUT_EVENTS = 5
# The cold-poll slice is measured two ways, both recall@25 of a user's cold relevant polls:
#
# - "cold_polls" (Personalize's shape): in the model's whole top 25. Cold polls must
#   there beat warm polls whose appeal is already proven; on the demo data a few % of
#   relevant polls are cold, mostly polls that few people liked, so a calibrated model
#   rightly ranks them below the warm head and this recall stays near 0 for every
#   model (UP with text 0.014 over 417 users, 3 folds; 0 on one fold's 35 users). So
#   near 0 it says little about how well a model scores cold polls.
# - "cold candidates" (beside it, not instead): in the model's top 25 among cold polls
#   only (polls under the same threshold, the user's own excluded). This is how a feed
#   actually surfaces cold polls (a "new polls" row through a filter, exploration
#   slots), and it isolates what the issue asks of text: placing a poll with almost no
#   votes by what it says.
COLD_CANDIDATES_DEPTH = M.EVALUATION_DEPTH
# Heavy users: their count of events in the whole dataset is at or above this quantile
# of all users' counts (one threshold for every fold, so folds are comparable).
HEAVY_USER_QUANTILE = 0.9
# The headline comparison: Personalize's console leads with NDCG@10.
HEADLINE_METRIC = "normalized_discounted_cumulative_gain_at_10"
# Fewer scored users than this over all folds, and the report says its intervals are rough.
MIN_SCORED_FOR_INTERVALS = 100
UP_KEY, UP_NO_TEXT_KEY = "up", "up-notext"
# ``--ablate NAME`` runs UP without component NAME under this key, beside UP itself.
ABLATION_KEY_PREFIX = "up-without-"
# A tuned knob needs this many numeric values before "it won on the edge" means anything.
MIN_VALUES_FOR_EDGE_NOTE = 3
# Steps a search may take past the edge of a knob's grid while validation improves: two
# geometric steps reach e.g. ALS regularization 1,000 from a grid ending at 10, at a
# few extra fits per fold instead of a grid twice as wide.
GRID_EXTENSION_STEPS = 2
# Tuning scores each candidate on this many inner folds of a fold's training users,
# pooled: every training user who can be held out is validated once. One validation
# split of 10 % of them (a few dozen users on a 100k-event dataset) let EASE's lambda
# swing from 50 to 10,000 between folds and end 9.5 % below its textbook value.
TUNING_FOLDS = 3


def _numeric(values: Sequence[Any]) -> bool:
    return bool(values) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :meth:`EvaluationReport.to_json`."""
    text = importlib.resources.files("recsys.evaluation").joinpath(REPORT_SCHEMA_FILE).read_text()
    return json.loads(text)


class UnknownModel(HunchError):
    """A name given to --models is not one the evaluation knows."""


class UnknownComponent(HunchError):
    """A name given to --ablate is not one of User-Personalization's components."""


def ablation_keys(components: Sequence[str]) -> list[str]:
    """Model keys of UP without each of ``components``; an unknown name fails with the
    registered ones listed."""
    from recsys.recipes.user_personalization import COMPONENT_NAMES

    names = list(dict.fromkeys(c.strip().lower().replace("-", "_") for c in components))
    unknown = [c for c in names if c not in COMPONENT_NAMES]
    if unknown:
        raise UnknownComponent(
            f"unknown component(s) {', '.join(unknown)} to ablate; User-Personalization "
            f"registers: {', '.join(COMPONENT_NAMES)}")
    return [ABLATION_KEY_PREFIX + c for c in names]


def _ablated_recipe(key: str) -> tuple[str, str, dict[str, Any]]:
    """UP's recipe entry with the component named by ``key`` dropped."""
    from recsys.recipes.user_personalization import COMPONENT_NAMES

    module, name, kwargs = _RECIPES[UP_KEY]
    dropped = key.removeprefix(ABLATION_KEY_PREFIX)
    return module, name, {**kwargs, "components": [c for c in COMPONENT_NAMES if c != dropped]}


class FoldsKept(HunchError):
    """A run with ``only_folds`` measured and kept its folds; it reports nothing by design."""


class RecipeUnavailable(HunchError):
    """One of our recipes cannot be built here (module not written yet, no such option)."""


@dataclass(frozen=True)
class _Fold:
    """What every model of one fold is given."""

    split: EvaluationSplit
    catalog: Sequence[str]
    data: TrainingData
    matrix: UserItemMatrix
    now: float | None

    @classmethod
    def build(cls, split: EvaluationSplit, catalog: Sequence[str], source: TrainingData,
              comment_texts: CommentTexts | None = None,
              event_values: EventValues | None = None) -> _Fold:
        data = TrainingData(
            interactions=list(split.training),
            items=fold_items(source.items, split.training, comment_texts),
            users=source.users,
            impressions=split.training_impressions(source.impressions),
        )
        # Temporal folds recommend "as of" the cut-off; a user split has no such moment,
        # so recipes use their default (the newest event they saw).
        now = float(split.cutoff) if split.cutoff is not None else None
        # Held-out users keep a row even when a value threshold drops all their input.
        matrix = UserItemMatrix.build(split.training, catalog, event_values,
                                      users=sorted(split.held_out))
        return cls(split, catalog, data, matrix, now)


class Contender(Protocol):
    """A model as the evaluation drives it: tune on validation, fit, rank held-out users."""

    key: str
    name: str
    kind: str
    family: str | None
    configuration: str | None

    def tune(self, validation: Sequence[_Fold], seed: int) -> dict[str, Any]: ...

    def fit(self, fold: _Fold, params: Mapping[str, Any]) -> None: ...

    def rank(self, fold: _Fold, users: Sequence[HeldOutUser], n: int) -> list[list[str]]: ...

    def rank_among(self, fold: _Fold, users: Sequence[HeldOutUser], n: int,
                   candidates: Collection[str]) -> list[list[str]]: ...

    def fit_summary(self) -> dict[str, Any] | None: ...


# Item fields derived from events: field -> the event type whose events it summarises.
# Taken from the whole dataset they would carry held-out users' future events (a poll
# gets COMMENTS text because a held-out user will comment on it), so each fold rebuilds
# them from its training events only.
EVENT_DERIVED_FIELDS: dict[str, str] = {"COMMENTS": "COMMENT"}
CommentTexts = Mapping[tuple[str, str, int], str]  # (user, poll, timestamp) -> text


def _has_field(items: Mapping[str, Mapping[str, Any]], name: str) -> bool:
    return any(record.get(name) for record in items.values())


def fold_items(items: Mapping[str, Mapping[str, Any]], training: Sequence[Interaction],
               comment_texts: CommentTexts | None) -> Mapping[str, Mapping[str, Any]]:
    """``items`` with COMMENTS rebuilt from the COMMENT events in ``training`` only.

    Without the comments' texts the field cannot be rebuilt and is dropped (set to
    None): its whole-data value would leak. Items without COMMENTS come back unchanged.
    """
    if not _has_field(items, "COMMENTS"):
        return items
    texts: dict[str, list[str]] = {}
    if comment_texts is not None:
        event_type = EVENT_DERIVED_FIELDS["COMMENTS"]
        for e in sorted(training, key=lambda e: e.timestamp):  # stable: file order on ties
            if e.event_type.upper() == event_type:
                text = comment_texts.get((e.user_id, e.item_id, e.timestamp))
                if text is not None:
                    texts.setdefault(e.item_id, []).append(text)
    return {
        item: {**record, "COMMENTS": (clean_text(comments_field(texts[item])) or None)
               if item in texts else None}
        for item, record in items.items()
    }


def _headline(validation: Sequence[_Fold], contender: Contender, params: Mapping[str, Any]) -> float:
    """Validation NDCG@10 of ``params``, pooled over the users of every inner fold."""
    scores: list[float] = []
    for fold in validation:
        users = fold.split.scored_users
        contender.fit(fold, params)
        lists = contender.rank(fold, users, M.EVALUATION_DEPTH)
        scores.extend(M.ndcg_at_k(r, u.relevant_items, 10) for r, u in zip(lists, users))
    return float(np.mean(scores)) if scores else 0.0


class PeerContender:
    """A matrix peer; tuned over ``grid`` when it has one.

    ``family`` names the method (ease, als, ...); ``configuration`` says how its
    hyperparameters were set: ``tuned`` (on validation), ``textbook`` (a published
    default, never tuned) or ``default`` (the library's, for peers with no grid).
    """

    kind = "peer"

    def __init__(self, key: str, factory: Callable[..., Peer], grid: Mapping[str, Sequence] | None = None,
                 fixed: Mapping[str, Any] | None = None, *, family: str | None = None,
                 configuration: str | None = None) -> None:
        self.key, self.factory, self.grid = key, factory, grid
        self.fixed = dict(fixed or {})
        self.name = key
        self.family = family or key
        self.configuration = configuration or ("tuned" if grid else "default")
        self.model: Peer | None = None
        # Every value tried per knob, over all folds: the grid plus any steps past it.
        self.searched: dict[str, set] = {k: set(v) for k, v in (grid or {}).items()}

    def tune(self, validation: Sequence[_Fold], seed: int) -> dict[str, Any]:
        if not self.grid:
            return {}
        scored = [(_headline(validation, self, p), i, p)
                  for i, p in enumerate(ParameterGrid(dict(self.grid)))]
        best = max(scored, key=lambda s: (s[0], -s[1]))  # ties: the first (simplest) combination
        return self._step_past_edges(validation, dict(best[2]), best[0])

    def _step_past_edges(self, validation: Sequence[_Fold], best: dict[str, Any],
                         best_score: float) -> dict[str, Any]:
        """Follow a knob whose best value is the grid's largest or smallest past that edge.

        One knob at a time, others held at their best, stepping geometrically by the
        ratio of the edge to its neighbour while validation improves, at most
        :data:`GRID_EXTENSION_STEPS` times: a peer stopped short of its optimum by our
        grid would flatter us.
        """
        assert self.grid is not None
        for name, values in self.grid.items():
            ordered = sorted(values) if _numeric(values) else []
            if len(ordered) < MIN_VALUES_FOR_EDGE_NOTE:
                continue
            for edge, neighbour in ((ordered[-1], ordered[-2]), (ordered[0], ordered[1])):
                if best[name] != edge:
                    continue
                value = edge
                for _ in range(GRID_EXTENSION_STEPS):
                    previous, value = value, value * (edge / neighbour)
                    if isinstance(edge, int):
                        value = int(round(value))
                        if value < 1 or value == previous:
                            break
                    self.searched[name].add(value)
                    candidate = {**best, name: value}
                    score = _headline(validation, self, candidate)
                    if score <= best_score:
                        break
                    best, best_score = candidate, score
        return best

    def fit(self, fold: _Fold, params: Mapping[str, Any]) -> None:
        self.model = self.factory(**self.fixed, **params).fit(fold.matrix.matrix)

    def rank(self, fold: _Fold, users: Sequence[HeldOutUser], n: int) -> list[list[str]]:
        assert self.model is not None
        rows = np.array([fold.matrix.user_row[u.user_id] for u in users], dtype=np.int64)
        top = self.model.recommend(rows, fold.matrix.matrix, n)
        items = fold.matrix.item_ids
        return [[items[j] for j in row if j >= 0] for row in top]

    def rank_among(self, fold: _Fold, users: Sequence[HeldOutUser], n: int,
                   candidates: Collection[str]) -> list[list[str]]:
        """Top ``n`` of ``candidates`` only: the whole ranking, filtered."""
        full = self.rank(fold, users, len(fold.matrix.item_ids))
        return [[i for i in ranked if i in candidates][:n] for ranked in full]

    def fit_summary(self) -> None:
        return None  # a peer's choices are its tuned parameters (``params``)


class EaseContender(PeerContender):
    """EASE, tuned along its regularisation path.

    The grid is the same as a plain search would try, and the choice the same (best
    validation NDCG@10, ties to the first combination), but each weighting costs one
    eigendecomposition and each lambda only the scoring of validation users, instead
    of one dense items x items solve per combination.
    """

    def tune(self, validation: Sequence[_Fold], seed: int) -> dict[str, Any]:
        assert self.grid is not None
        grid = {k: tuple(v) for k, v in self.grid.items()}
        per_user: dict[tuple[float, str], list[float]] = {}
        for fold in validation:
            matrix = fold.matrix
            EASE(**self.fixed).check_size(matrix.matrix)
            users = fold.split.scored_users
            rows = np.array([matrix.user_row[u.user_id] for u in users], dtype=np.int64)
            for params, top in ease_grid_rankings(matrix.matrix, rows, M.EVALUATION_DEPTH,
                                                  grid["l2"], grid["weighting"]):
                lists = [[matrix.item_ids[j] for j in row if j >= 0] for row in top]
                per_user.setdefault((params["l2"], params["weighting"]), []).extend(
                    M.ndcg_at_k(r, u.relevant_items, 10) for r, u in zip(lists, users))
        scores = {k: float(np.mean(v)) if v else 0.0 for k, v in per_user.items()}
        candidates = list(ParameterGrid(grid))
        best = max(range(len(candidates)), key=lambda i: (
            scores.get((float(candidates[i]["l2"]), candidates[i]["weighting"]), 0.0), -i))
        return dict(candidates[best])


# Our recipes: key -> (module, Recipe.name, constructor arguments). Exploration is off
# because Personalize's offline metrics score the solution version, before a campaign's
# explorationWeight applies; its random bonus would only blur the comparison.
_RECIPES: dict[str, tuple[str, str, dict[str, Any]]] = {
    UP_KEY: ("recsys.recipes.user_personalization", "user-personalization",
             {"exploration_weight": 0.0}),
    UP_NO_TEXT_KEY: ("recsys.recipes.user_personalization", "user-personalization",
                     {"exploration_weight": 0.0, "use_text": False}),
    "popularity-count": ("recsys.recipes.popularity_count", "popularity-count", {}),
    "trending-now": ("recsys.recipes.trending_now", "trending-now", {}),
}


def _recipe_class(module_name: str, recipe_name: str) -> type:
    """Find the recipe class lazily: the modules are written by other people, maybe later."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise RecipeUnavailable(f"{module_name} does not exist yet") from None
    recipes = [
        obj for _, obj in inspect.getmembers(module, inspect.isclass)
        if callable(getattr(obj, "fit", None)) and callable(getattr(obj, "recommend", None))
    ]
    # A package re-exports its recipe from a submodule; then only its name can tell.
    named = [c for c in recipes if getattr(c, "name", None) == recipe_name]
    classes = [c for c in recipes if c.__module__ == module.__name__]
    if named or len(classes) == 1:
        return (named or classes)[0]
    raise RecipeUnavailable(f"{module_name} has no recipe class named {recipe_name!r}")


class RecipeContender:
    """One of our recipes, driven only through the Recipe protocol."""

    kind = "recipe"
    family: str | None = None
    configuration: str | None = None

    def __init__(self, key: str, seed: int = 0, event_values: EventValues | None = None) -> None:
        self.key, self.seed = key, seed
        self.module_name, self.name, self.kwargs = (
            _ablated_recipe(key) if key.startswith(ABLATION_KEY_PREFIX) else _RECIPES[key])
        self.recipe: Any = None
        self.event_values = event_values

    def check(self) -> None:
        cls = _recipe_class(self.module_name, self.name)
        accepted = inspect.signature(cls).parameters
        missing = [k for k in self.kwargs if k not in accepted
                   and not any(p.kind is p.VAR_KEYWORD for p in accepted.values())]
        if missing:
            raise RecipeUnavailable(f"{cls.__name__} takes no {', '.join(missing)} parameter")

    def takes_event_values(self) -> bool:
        cls = _recipe_class(self.module_name, self.name)
        return (self.event_values is not None
                and "event_values" in inspect.signature(cls).parameters)

    def tune(self, validation: Sequence[_Fold], seed: int) -> dict[str, Any]:
        return {}  # our recipes run with their shipped defaults: that is what we serve

    def fit_summary(self) -> dict[str, Any] | None:
        """What the fitted recipe chose inside its fit, when it says (UP does)."""
        return fit_summary(self.recipe)

    def fit(self, fold: _Fold, params: Mapping[str, Any]) -> None:
        cls = _recipe_class(self.module_name, self.name)
        kwargs = {**self.kwargs, **params}
        if "random_state" in inspect.signature(cls).parameters:
            kwargs["random_state"] = self.seed
        if self.takes_event_values():
            kwargs["event_values"] = self.event_values
        with threadpool_limits(1, "blas"):  # the recipes use implicit, which asks for this
            self.recipe = cls(**kwargs).fit(fold.data)

    def rank(self, fold: _Fold, users: Sequence[HeldOutUser], n: int) -> list[list[str]]:
        return [
            [s.item_id for s in self.recipe.recommend(u.user_id, n, now=fold.now,
                                                      exclude=u.input_items)]
            for u in users
        ]

    def rank_among(self, fold: _Fold, users: Sequence[HeldOutUser], n: int,
                   candidates: Collection[str]) -> list[list[str]]:
        """Top ``n`` of ``candidates`` only, through the Recipe protocol's ``allow``."""
        return [
            [s.item_id for s in self.recipe.recommend(u.user_id, n, now=fold.now,
                                                      exclude=u.input_items,
                                                      allow=candidates.__contains__)]
            for u in users
        ]


# Published configurations each peer also runs with, untuned, beside its tuned self: a
# search on validation users can land below a plain default on the test users, and
# then "we beat the tuned peer" would flatter us. key -> (family, fixed parameters).
TEXTBOOK_PEERS: dict[str, tuple[str, dict[str, Any]]] = {
    # Steck (2019) and common practice: lambda in the low hundreds on binary data.
    "ease-textbook-200": ("ease", {"l2": 200.0, "weighting": "binary"}),
    "ease-textbook-500": ("ease", {"l2": 500.0, "weighting": "binary"}),
    # Frequently used implicit-ALS settings (Hu et al. 2008's confidence form).
    "als-textbook-128": ("als", {"factors": 128, "regularization": 1.0, "alpha": 2.0}),
    "als-textbook-64": ("als", {"factors": 64, "regularization": 0.1, "alpha": 5.0}),
    # Item-kNN with shrinkage, Dacrema et al. (2019)'s ItemKNNCF defaults' order.
    "item-knn-shrink": ("item-knn", {"neighbours": 100, "shrink": 100.0}),
    # RP3beta's reference implementation defaults (Dacrema et al. 2019).
    "rp3beta-textbook": ("rp3beta", {"alpha": 1.0, "beta": 0.6, "neighbours": 100}),
}


def _peer(key: str, seed: int, ease_max_items: int) -> PeerContender:
    if key in TEXTBOOK_PEERS:
        family, fixed = TEXTBOOK_PEERS[key]
        factory = {"ease": EASE, "als": ALS, "item-knn": ItemKNNShrunk, "rp3beta": RP3beta}[family]
        extra = ({"max_items": ease_max_items} if family == "ease"
                 else {"random_state": seed} if family == "als" else {})
        return PeerContender(key, factory, None, {**fixed, **extra}, family=family,
                             configuration="textbook")
    if key == "als":
        return PeerContender(key, ALS, ALS.GRID, {"random_state": seed})
    if key == "bpr":
        return PeerContender(key, BPR, None, {"random_state": seed})
    if key == "item-knn":
        return PeerContender(key, ItemKNN)
    if key == "ease":
        return EaseContender(key, EASE, EASE.GRID, {"max_items": ease_max_items})
    if key == "rp3beta":
        return PeerContender(key, RP3beta, RP3beta.GRID)
    if key == "most-popular":
        return PeerContender(key, MostPopular)
    return PeerContender(key, RandomPolls, None, {"random_state": seed})


PEER_KEYS: tuple[str, ...] = ("ease", "ease-textbook-200", "ease-textbook-500",
                              "als", "als-textbook-128", "als-textbook-64", "bpr",
                              "item-knn", "item-knn-shrink", "rp3beta", "rp3beta-textbook",
                              "most-popular", "random")
# A family's name in --models runs all its configurations.
PEER_FAMILIES: dict[str, tuple[str, ...]] = {
    family: (family, *(k for k, (f, _) in TEXTBOOK_PEERS.items() if f == family))
    for family in ("ease", "als", "item-knn", "rp3beta")
}
RECIPE_KEYS: tuple[str, ...] = tuple(_RECIPES)
MODEL_KEYS: tuple[str, ...] = RECIPE_KEYS + PEER_KEYS


def parse_models(spec: str | Sequence[str] | None) -> list[str]:
    """Model keys from ``"up,als,bpr"`` (or a list); all of them when empty. A peer
    family's name (ease, als, item-knn, rp3beta) stands for all its configurations."""
    if not spec:
        return list(MODEL_KEYS)
    keys = [k.strip().lower() for k in (spec.split(",") if isinstance(spec, str) else spec)]
    keys = [k for k in keys if k]
    keys = [member for k in keys for member in PEER_FAMILIES.get(k, (k,))]
    unknown = [k for k in keys if k not in MODEL_KEYS]
    if unknown:
        raise UnknownModel(
            f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_KEYS)}"
        )
    return list(dict.fromkeys(keys))


class EvaluationProgress(Protocol):
    """Told what the evaluation is doing, so a CLI can draw progress bars."""

    def fold_started(self, fold: int, folds: int, models: Sequence[str]) -> None: ...

    def model_finished(self, fold: int, model: str) -> None: ...


class _Silent:
    def fold_started(self, fold: int, folds: int, models: Sequence[str]) -> None:
        pass

    def model_finished(self, fold: int, model: str) -> None:
        pass


@dataclass
class _FoldOutcome:
    fold: int
    per_user: dict[str, np.ndarray]
    coverage: float
    cold_poll_recall: np.ndarray
    cold_users: np.ndarray
    heavy_users: np.ndarray
    fit_seconds: float
    tune_seconds: float
    params: dict[str, Any]
    # Recall@25 among cold polls only (see COLD_CANDIDATES_DEPTH), per user with a cold
    # relevant poll, in the same order as cold_poll_recall.
    cold_candidate_recall: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # What the recipe's own fit chose on its validation split (UP's fit_summary: history
    # twins on or off, blend weights, ...); None for peers (their choice is ``params``)
    # and in fold files written before it was recorded.
    fit_summary: dict[str, Any] | None = None


@dataclass
class ModelResult:
    """Everything measured about one model over all folds."""

    key: str
    name: str
    kind: str
    status: str = "ok"
    note: str | None = None
    folds: list[_FoldOutcome] = field(default_factory=list)
    family: str | None = None
    configuration: str | None = None

    def pooled(self, metric: str) -> np.ndarray:
        """Per-user values of ``metric`` over every fold (each user once per fold held out)."""
        return np.concatenate([f.per_user[metric] for f in self.folds]) if self.folds else np.array([])

    def pooled_slice(self, metric: str, slice_name: str) -> np.ndarray:
        if not self.folds:
            return np.array([])
        if slice_name == "cold_polls":
            return np.concatenate([f.cold_poll_recall for f in self.folds])
        if slice_name == "cold_candidates":
            return np.concatenate([f.cold_candidate_recall for f in self.folds])
        mask_of = {"cold_users": lambda f: f.cold_users, "heavy_users": lambda f: f.heavy_users}
        return np.concatenate([f.per_user[metric][mask_of[slice_name](f)] for f in self.folds])

    @property
    def fit_seconds(self) -> float:
        return sum(f.fit_seconds for f in self.folds)

    @property
    def tune_seconds(self) -> float:
        return sum(f.tune_seconds for f in self.folds)


@dataclass
class EvaluationReport:
    """The outcome of ``evaluate``: per-model results, comparisons, notes."""

    dataset: dict[str, int]
    protocol: dict[str, Any]
    folds: list[dict[str, Any]]
    models: list[ModelResult]
    notes: list[str]
    seed: int = 0
    bootstrap_samples: int = BOOTSTRAP_SAMPLES

    def model(self, key: str) -> ModelResult:
        return next(m for m in self.models if m.key == key)

    def ok_models(self) -> list[ModelResult]:
        return [m for m in self.models if m.status == "ok"]

    def estimate(self, key: str, metric: str) -> Estimate:
        m = self.model(key)
        if metric == "coverage":
            values = [f.coverage for f in m.folds]
            return Estimate(float(np.mean(values)) if values else float("nan"), None, None,
                            len(m.pooled(HEADLINE_METRIC)))
        return mean_interval(m.pooled(metric), seed=self.seed, samples=self.bootstrap_samples)

    def best_peer(self) -> ModelResult | None:
        """The best configuration of any peer on the test folds' users.

        Conservative on purpose: choosing among configurations by their test numbers
        favours the peer (a real user of it would not know which is best), so a lead
        over it is a lower bound on the lead over any one of them.
        """
        peers = [m for m in self.ok_models() if m.kind == "peer"]
        return max(peers, key=lambda m: float(np.mean(m.pooled(HEADLINE_METRIC))), default=None)

    def comparison(self) -> dict[str, Any] | None:
        """UP's headline metric over the best peer's, paired per user."""
        up = next((m for m in self.ok_models() if m.key == UP_KEY), None)
        peer = self.best_peer()
        if up is None or peer is None:
            return None
        a, b = up.pooled(HEADLINE_METRIC), peer.pooled(HEADLINE_METRIC)
        kw = {"seed": self.seed, "samples": self.bootstrap_samples}
        return {
            "model": UP_KEY, "best_peer": peer.key,
            "peers": [m.key for m in self.ok_models() if m.kind == "peer"],
            "metric": HEADLINE_METRIC,
            "ratio": paired_ratio(a, b, **kw), "difference": paired_difference(a, b, **kw),
        }

    def text_on_cold_polls(self) -> dict[str, Estimate] | None:
        """UP with text vs without, recall@25 on cold polls, paired per user."""
        return self._text_against_no_text("cold_polls")

    def text_on_cold_candidates(self) -> dict[str, Estimate] | None:
        """UP with text vs without, recall@25 among cold polls only, paired per user;
        with the ratio of means, the issue's bar (at least 2)."""
        return self._text_against_no_text("cold_candidates", with_ratio=True)

    def _text_against_no_text(self, slice_name: str, with_ratio: bool = False
                              ) -> dict[str, Estimate] | None:
        ok = {m.key: m for m in self.ok_models()}
        if UP_KEY not in ok or UP_NO_TEXT_KEY not in ok:
            return None
        a = ok[UP_KEY].pooled_slice(M.RECALL_METRIC, slice_name)
        b = ok[UP_NO_TEXT_KEY].pooled_slice(M.RECALL_METRIC, slice_name)
        kw = {"seed": self.seed, "samples": self.bootstrap_samples}
        out = {"with_text": mean_interval(a, **kw), "without_text": mean_interval(b, **kw),
               "difference": paired_difference(a, b, **kw)}
        if with_ratio:
            out["ratio"] = paired_ratio(a, b, **kw)
        return out

    def contributions(self) -> list[dict[str, Any]]:
        """Each ablated component's contribution: UP's headline metric minus UP's
        without it, paired per user (the same folds and held-out users)."""
        ok = {m.key: m for m in self.ok_models()}
        if UP_KEY not in ok:
            return []
        full = ok[UP_KEY].pooled(HEADLINE_METRIC)
        kw = {"seed": self.seed, "samples": self.bootstrap_samples}
        out = []
        for key, m in ok.items():
            if not key.startswith(ABLATION_KEY_PREFIX):
                continue
            without = m.pooled(HEADLINE_METRIC)
            out.append({"component": key.removeprefix(ABLATION_KEY_PREFIX), "model": key,
                        "metric": HEADLINE_METRIC, "with": mean_interval(full, **kw),
                        "without": mean_interval(without, **kw),
                        "difference": paired_difference(full, without, **kw)})
        return out

    def slices(self, key: str) -> dict[str, dict[str, Estimate]]:
        m = self.model(key)
        kw = {"seed": self.seed, "samples": self.bootstrap_samples}
        out: dict[str, dict[str, Estimate]] = {
            name: {M.RECALL_METRIC: mean_interval(m.pooled_slice(M.RECALL_METRIC, name), **kw)}
            for name in ("cold_polls", "cold_candidates")
        }
        for name in ("cold_users", "heavy_users"):
            out[name] = {metric: mean_interval(m.pooled_slice(metric, name), **kw)
                         for metric in (HEADLINE_METRIC, M.RECALL_METRIC)}
        return out

    def to_json(self) -> dict[str, Any]:
        """The documented, stable shape (see this module's docstring)."""
        models = []
        for m in self.models:
            entry: dict[str, Any] = {
                "key": m.key, "name": m.name, "kind": m.kind, "family": m.family,
                "configuration": m.configuration, "status": m.status, "note": m.note,
                "fit_seconds": m.fit_seconds, "tune_seconds": m.tune_seconds,
                "hyperparameters": [f.params for f in m.folds],
                "metrics": {}, "per_fold": [], "slices": {},
            }
            if m.status == "ok":
                entry["metrics"] = {k: self.estimate(m.key, k).to_json()
                                    for k in M.PERSONALIZE_METRICS + (M.RECALL_METRIC,)}
                entry["per_fold"] = [
                    {"fold": f.fold, "fit_seconds": f.fit_seconds, "tune_seconds": f.tune_seconds,
                     "metrics": {"coverage": f.coverage,
                                 **{k: float(np.mean(v)) if len(v) else None
                                    for k, v in f.per_user.items()}},
                     "fit": f.fit_summary}
                    for f in m.folds
                ]
                entry["slices"] = {s: {k: e.to_json() for k, e in v.items()}
                                   for s, v in self.slices(m.key).items()}
            models.append(entry)
        comparison = self.comparison()
        text = self.text_on_cold_polls()
        among_cold = self.text_on_cold_candidates()
        contributions = self.contributions()
        return {
            "schema_version": SCHEMA_VERSION,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "folds": self.folds,
            "models": models,
            "comparison": None if comparison is None else {
                k: (v.to_json() if isinstance(v, Estimate) else v) for k, v in comparison.items()
            },
            "text_on_cold_polls": None if text is None else {k: v.to_json() for k, v in text.items()},
            "text_on_cold_candidates": (None if among_cold is None
                                        else {k: v.to_json() for k, v in among_cold.items()}),
            "notes": self.notes,
            # Only when components were ablated: other reports keep their shape.
            **({"contributions": [{k: (v.to_json() if isinstance(v, Estimate) else v)
                                   for k, v in c.items()} for c in contributions]}
               if contributions else {}),
        }


def _contenders(keys: Sequence[str], seed: int, ease_max_items: int,
                notes: list[str], event_values: EventValues | None = None
                ) -> list[Contender | ModelResult]:
    out: list[Contender | ModelResult] = []
    for key in keys:
        if key in _RECIPES or key.startswith(ABLATION_KEY_PREFIX):
            contender = RecipeContender(key, seed, event_values)
            try:
                contender.check()
            except RecipeUnavailable as exc:
                note = f"{key} skipped: {exc}"
                notes.append(note)
                out.append(ModelResult(key, contender.name, "recipe", "skipped", note))
                continue
            out.append(contender)
            if event_values is not None and not contender.takes_event_values():
                notes.append(f"{key} trains on every event: it takes no event-value settings")
        else:
            out.append(_peer(key, seed, ease_max_items))
    return out


def _grid_edge_notes(key: str, searched: Mapping[str, Collection], result: ModelResult) -> list[str]:
    """Say when a tuned value sat on the edge of all values tried, in most folds.

    A peer whose best value is the largest (or smallest) tried may do better past it, and
    then "we beat it" flatters us; the note says which knob to widen. Ranges of fewer than
    three numbers are skipped: there every choice is an edge.
    """
    notes = []
    chosen = [f.params for f in result.folds]
    for name, values in searched.items():
        values = sorted(values) if _numeric(list(values)) else []
        if len(values) < MIN_VALUES_FOR_EDGE_NOTE:
            continue
        for edge, label in ((values[-1], "largest"), (values[0], "smallest")):
            hits = sum(1 for params in chosen if params.get(name) == edge)
            if chosen and hits * 2 > len(chosen):
                notes.append(
                    f"{key}: {name}={edge:g}, the {label} value tried, won in {hits}/{len(chosen)} "
                    f"fold(s); its optimum may lie beyond the values tried ({', '.join(f'{v:g}' for v in values)})"
                )
    return notes


def _small_sample_notes(results: Sequence[ModelResult]) -> list[str]:
    """Intervals are a bootstrap over the scored users: with few, they are rough, and
    where every user scored the same they have no width at all, which reads as a
    certainty the data does not hold (a probe's 1-user run printed [0.0000, 0.0000])."""
    ok = [m for m in results if m.status == "ok" and m.folds]
    if not ok:
        return []
    notes = []
    scored = len(ok[0].pooled(HEADLINE_METRIC))
    if scored < MIN_SCORED_FOR_INTERVALS:
        notes.append(f"only {scored} held-out user(s) were scored over all folds (fewer than "
                     f"{MIN_SCORED_FOR_INTERVALS}): the intervals, a bootstrap over them, are "
                     "rough; judge differences on data with more users")
    constant = [m.key for m in ok
                if scored > 0 and np.ptp(m.pooled(HEADLINE_METRIC)) == 0.0]
    if constant:
        notes.append(f"{', '.join(constant)}: every scored user has the same NDCG@10, so "
                     "its interval has no width; that is the sample's, not a certainty")
    return notes


def _tuning_shortfall_notes(results: Sequence[ModelResult]) -> list[str]:
    """Say when a tuned peer lost to one of its own textbook configurations on the test
    users: its tuning did not transfer, and the comparison uses the better one."""
    ok = [m for m in results if m.status == "ok" and m.kind == "peer"]
    notes = []
    for tuned in (m for m in ok if m.configuration == "tuned"):
        mean = float(np.mean(tuned.pooled(HEADLINE_METRIC)))
        better = [(float(np.mean(m.pooled(HEADLINE_METRIC))), m.key) for m in ok
                  if m.family == tuned.family and m.configuration == "textbook"]
        better = [b for b in better if b[0] > mean]
        if better:
            score, key = max(better)
            notes.append(f"{tuned.key} (tuned) NDCG@10 {mean:.4f} < {key} (textbook) "
                         f"{score:.4f} on the test users: tuning on validation users did "
                         "not transfer")
    return notes


def _fold_list(folds: Collection[int]) -> str:
    """0-based folds as the 1-based numbers people read."""
    return ", ".join(str(f + 1) for f in sorted(folds))


def _measure_fold(split_: EvaluationSplit, contenders: Sequence[Any],
                  results: Mapping[str, ModelResult], stopped: Collection[str],
                  catalog: list[str], data: TrainingData, comment_texts: CommentTexts | None,
                  event_values: EventValues | None, tuning_folds: int, seed: int,
                  events_per_user: Counter, heavy_min: float,
                  progress: EvaluationProgress) -> dict[str, Any]:
    """Every contender on one fold: its row, each model's outcome, and the models that
    stopped (skipped or failed) in it. ``stopped`` are models that stopped in a fold
    measured before; they are not run again."""
    fold = _Fold.build(split_, catalog, data, comment_texts, event_values)
    users = split_.scored_users
    if not users:
        raise EvaluationSplitError(
            f"fold {split_.fold} has no held-out user with a new poll to predict; "
            "the data needs more users with several interactions"
        )
    record: dict[str, Any] = {
        "row": {"fold": split_.fold, "training_interactions": len(split_.training),
                "held_out_users": len(split_.held_out), "scored_users": len(users),
                "cutoff": split_.cutoff},
        "outcomes": {}, "stopped": {}, "searched": {},
    }
    validation: list[_Fold] | None = None
    training_counts = Counter(e.item_id for e in split_.training)
    cold_sets = [{i for i in u.relevant_items
                  if training_counts[i] < COLD_POLL_MAX_TRAINING_INTERACTIONS} for u in users]
    cold_users = np.array([len(u.input) < COLD_USER_MAX_INPUT_EVENTS for u in users])
    cold_catalog = frozenset(i for i in catalog
                             if training_counts[i] < COLD_POLL_MAX_TRAINING_INTERACTIONS)
    cold_holders = [u for u, c in zip(users, cold_sets) if c]
    cold_relevant = [c for c in cold_sets if c]
    heavy_users = np.array([events_per_user[u.user_id] >= heavy_min for u in users])
    for contender in contenders:
        if (isinstance(contender, ModelResult) or results[contender.key].status != "ok"
                or contender.key in stopped):
            progress.model_finished(split_.fold, contender.key)
            continue
        try:
            started = time.perf_counter()
            params: dict[str, Any] = {}
            if getattr(contender, "grid", None):
                if validation is None:
                    validation = [_Fold.build(inner, catalog, data, comment_texts,
                                              event_values)
                                  for inner in validation_folds(split_, tuning_folds,
                                                                seed=seed + 1)]
                params = contender.tune(validation, seed)
            tuned = time.perf_counter()
            contender.fit(fold, params)
            fitted = time.perf_counter()
            fit_summary = contender.fit_summary()
            lists = contender.rank(fold, users, M.EVALUATION_DEPTH)
            among_cold = contender.rank_among(fold, cold_holders, COLD_CANDIDATES_DEPTH,
                                              cold_catalog)
        except PeerSkipped as exc:
            record["stopped"][contender.key] = ("skipped", str(exc))
            progress.model_finished(split_.fold, contender.key)
            continue
        except Exception as exc:
            if contender.kind != "recipe":
                raise
            # A recipe's bug must not hide every other model's numbers; it is
            # reported as a failure, with the error, for its owner to fix.
            record["stopped"][contender.key] = (
                "failed",
                f"{contender.key} failed in fold {split_.fold}: {type(exc).__name__}: {exc}")
            progress.model_finished(split_.fold, contender.key)
            continue
        per_user = [M.user_metrics(r, u.relevant_items) for r, u in zip(lists, users)]
        record["outcomes"][contender.key] = _FoldOutcome(
            fold=split_.fold,
            per_user={k: np.array([p[k] for p in per_user]) for k in M.PER_USER_METRICS},
            coverage=M.coverage(lists, len(catalog)),
            cold_poll_recall=np.array([M.recall_at_k(r, c, M.EVALUATION_DEPTH)
                                       for r, c in zip(lists, cold_sets) if c]),
            cold_users=cold_users, heavy_users=heavy_users,
            fit_seconds=fitted - tuned, tune_seconds=tuned - started, params=params,
            cold_candidate_recall=np.array([
                M.recall_at_k(r, c, COLD_CANDIDATES_DEPTH)
                for r, c in zip(among_cold, cold_relevant)]),
            fit_summary=fit_summary,
        )
        progress.model_finished(split_.fold, contender.key)
    for contender in contenders:
        if hasattr(contender, "searched"):
            record["searched"][contender.key] = {k: set(v) for k, v in contender.searched.items()}
    return record


def _pool_fold(record: Mapping[str, Any], results: Mapping[str, ModelResult],
               fold_rows: list[dict[str, Any]], notes: list[str]) -> None:
    """Add one fold's record to the run, as a sequential run would have: a model that
    stops (skipped, failed) loses its earlier folds and is not pooled after."""
    fold_rows.append(record["row"])
    for key, (status, note) in record["stopped"].items():
        result = results[key]
        if result.status == "ok":
            result.status, result.note = status, note
            result.folds.clear()
            notes.append(note)
    for key, outcome in record["outcomes"].items():
        if results[key].status == "ok":
            results[key].folds.append(outcome)


def evaluate(
    data: TrainingData,
    *,
    split: str = "personalize",
    folds: int = 1,
    seed: int = 0,
    models: str | Sequence[str] | None = None,
    ease_max_items: int = EASE_MAX_ITEMS,
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
    progress: EvaluationProgress | None = None,
    comment_texts: CommentTexts | None = None,
    tuning_folds: int = TUNING_FOLDS,
    event_values: EventValues | None = None,
    ablate: Sequence[str] = (),
    checkpoint: Path | None = None,
    data_identity: str | None = None,
    only_folds: Collection[int] | None = None,
) -> EvaluationReport:
    """Evaluate ``models`` (keys of :data:`MODEL_KEYS`) on ``data``; see the module doc.

    ``comment_texts`` (each COMMENT event's text, e.g. the demo's comments.csv) lets
    every fold rebuild the items' COMMENTS from its training events; without it an
    items' COMMENTS field is dropped (see :func:`fold_items`). ``event_values``
    (per-type EVENT_VALUE thresholds, value as confidence) applies to the training
    events of every peer and of each recipe that takes it; relevant events are never
    filtered (the task stays: predict what the user does next). ``ablate`` (component
    names of User-Personalization) adds UP without each of them, on the same folds, and
    the report's ``contributions`` says what each one adds to UP's NDCG@10.
    ``checkpoint`` (a directory) keeps each finished fold so that an interrupted run
    resumes where it stopped (recsys.evaluation.checkpoint); ``data_identity`` (e.g. the
    sha256 of the data files) is then required, so that folds of other data are refused.
    ``only_folds`` (0-based fold numbers; needs ``checkpoint``) measures those folds only,
    keeps them and raises :class:`FoldsKept` instead of reporting: several processes, each
    with its own folds, share one checkpoint, and the run without ``only_folds`` reports.
    """
    progress = progress or _Silent()
    keys = parse_models(models)
    notes: list[str] = []
    if ablate:
        # A contribution is measured against UP itself, so UP runs too.
        keys = list(dict.fromkeys([*keys, UP_KEY, *ablation_keys(ablate)]))
        if ABLATION_KEY_PREFIX + "exploration" in keys:
            notes.append("exploration contributes 0 by construction here: offline metrics "
                         "score the model before a campaign's explorationWeight applies, so "
                         "UP runs with exploration_weight 0")
    if split not in ("personalize", "temporal"):
        raise EvaluationSplitError(f"--split must be personalize or temporal, not {split!r}")
    if split == "temporal" and folds != 1:
        raise EvaluationSplitError(
            "--folds applies to --split personalize only; a temporal split has one cut-off"
        )
    interactions = list(data.interactions)
    splits = (user_folds(interactions, folds, seed=seed) if split == "personalize"
              else [temporal_split(interactions)])
    catalog = sorted(set(data.items) | {e.item_id for e in interactions})
    events_per_user = Counter(e.user_id for e in interactions)
    heavy_min = float(np.quantile(list(events_per_user.values()), HEAVY_USER_QUANTILE))

    if comment_texts is None and _has_field(data.items, "COMMENTS"):
        notes.append("items' COMMENTS dropped: it summarises comments of every user, held-out "
                     "users' future ones included, and without each comment's text "
                     "(comments.csv) it cannot be rebuilt from a fold's training events")
    if event_values is not None and not event_values.active:
        event_values = None
    contenders = _contenders(keys, seed, ease_max_items, notes, event_values)
    results = {c.key: (c if isinstance(c, ModelResult) else
                       ModelResult(c.key, c.name, c.kind, family=c.family,
                                   configuration=c.configuration))
               for c in contenders}
    store: FoldCheckpoint | None = None
    if only_folds is not None:
        if checkpoint is None:
            raise EvaluationSplitError("--only-folds keeps its folds for a later run to report: "
                                       "it needs --checkpoint")
        outside = sorted(f + 1 for f in only_folds if not 0 <= f < len(splits))
        if outside:
            raise EvaluationSplitError(f"--only-folds {', '.join(map(str, outside))}: this run "
                                       f"has folds 1 to {len(splits)}")
    if checkpoint is not None:
        if not data_identity:
            raise ValueError("a checkpoint needs data_identity: without it folds measured "
                             "on other data could be pooled into this run")
        store = FoldCheckpoint.open(checkpoint, {
            "data": data_identity, "code": code_digest(), "split": split, "folds": folds,
            "seed": seed, "models": list(keys), "ease_max_items": ease_max_items,
            "bootstrap_samples": bootstrap_samples, "tuning_folds": tuning_folds,
            "event_values": None if event_values is None else event_values.to_json(),
            "ablate": list(ablate), "comment_texts": comment_texts is not None,
        })
    # What each fold measured, by fold: kept apart until every fold is in, then pooled in
    # fold order, so that folds measured out of order (or by other processes) pool as one
    # sequential run's would.
    records: dict[int, dict[str, Any]] = {}
    measured_here: set[int] = set()
    for split_ in splits:
        progress.fold_started(split_.fold, len(splits), keys)
        if store is not None and split_.fold not in records:
            # Looked up at each fold: a process beside this one may have kept it since.
            if (kept := store.load_fold(split_.fold)) is not None:
                records[split_.fold] = kept
        if split_.fold in records or (only_folds is not None and split_.fold not in only_folds):
            for contender in contenders:
                progress.model_finished(split_.fold, contender.key)
            continue
        stopped = {key for r in records.values() for key in r["stopped"]}
        record = _measure_fold(split_, contenders, results, stopped, catalog, data,
                               comment_texts, event_values, tuning_folds, seed,
                               events_per_user, heavy_min, progress)
        records[split_.fold] = record
        measured_here.add(split_.fold)
        if store is not None:
            store.save_fold(split_.fold, record)
    if only_folds is not None:
        assert store is not None
        missing = [s.fold for s in splits if s.fold not in records]
        raise FoldsKept(
            f"folds {_fold_list(measured_here) or 'none'} measured here, kept in {checkpoint}; "
            + (f"still to measure: {_fold_list(missing)}; " if missing else
               "every fold is in; ")
            + "the same command without --only-folds measures what is missing and reports")

    fold_rows: list[dict[str, Any]] = []
    for fold in sorted(records):
        _pool_fold(records[fold], results, fold_rows, notes)
    for result in results.values():
        # A sequential run measures a model in every fold or stops it. Fewer folds mean
        # the fold files disagree (one measured again after a later fold left the model
        # out, as stopped): pooling the rest would compare it on other users.
        if result.status == "ok" and len(result.folds) != len(records):
            missing = sorted(set(records) - {f.fold for f in result.folds})
            result.status = "failed"
            result.note = (f"{result.key} has no result in fold(s) {_fold_list(missing)} of "
                           f"checkpoint {checkpoint}: its fold files were measured by runs "
                           f"that disagree on this model; delete those folds' files and "
                           f"measure them again")
            result.folds.clear()
            notes.append(result.note)
    for contender in contenders:
        if hasattr(contender, "searched"):
            for record in records.values():
                for name, values in record["searched"].get(contender.key, {}).items():
                    contender.searched.setdefault(name, set()).update(values)
    earlier = sorted(set(records) - measured_here)
    if earlier:
        notes.append(f"folds {_fold_list(earlier)} were measured by another run of the same "
                     f"code on the same data (an earlier, interrupted one, or one beside this "
                     f"one with --only-folds; checkpoint {checkpoint})")

    for contender in contenders:
        result = results[contender.key]
        if result.status == "ok" and getattr(contender, "grid", None):
            notes.extend(_grid_edge_notes(contender.key, contender.searched, result))
    notes.extend(_tuning_shortfall_notes(list(results.values())))
    notes.extend(_small_sample_notes(list(results.values())))

    report = EvaluationReport(
        dataset={"users": len(events_per_user), "items": len(catalog),
                 "interactions": len(interactions)},
        protocol={
            "split": split, "folds": len(splits), "seed": seed,
            "confidence_level": CONFIDENCE_LEVEL, "bootstrap_samples": bootstrap_samples,
            "cold_poll_max_training_interactions": COLD_POLL_MAX_TRAINING_INTERACTIONS,
            "cold_user_max_input_events": COLD_USER_MAX_INPUT_EVENTS,
            "heavy_user_min_events": heavy_min,
            "event_values": None if event_values is None else event_values.to_json(),
        },
        folds=fold_rows,
        models=[results[c.key] for c in contenders],
        notes=notes, seed=seed, bootstrap_samples=bootstrap_samples,
    )
    return report
