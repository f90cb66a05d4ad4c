"""The blend: a logistic regression over the registered components' columns plus the
recency component's age steps, learned inside ``fit`` on a validation split carved from
TRAINING users only (Personalize's split shape: the newest 10 % of their events are the
targets and are withheld from everything the blend sees).

The rows are each validation user's **candidate pool**: the head of every column on its
own (the polls any blend could put on top) and a few random polls, labelled by whether
they are targets. Positives and negatives pass the same selection, so the regression
learns what separates targets from non-targets *among the polls that compete for the
top*. Drawing negatives from the current ranking's head while taking every target wherever
it ranked (as before) inverted the affinities on sparse data: the targets seldom reach the
head, so a high item-item score marked a negative; on Amazon Toys (development) item-item
alone scored 0.0004 NDCG@10 (one split) and UP 0.0550 (5 folds), against 0.0396 and 0.0683
with the pool. The price: a validation user whose targets are in no column's head gives
no rows (on sparse data most of them), so sparse catalogs learn from fewer users.

The poll-level candidates "appeal" (events against what the poll's age predicts),
"coldness" (how few events a poll has, as the factor shrink uses it) and the affinities
scaled by coldness are computed and served too, but on the demo data (2,000 users, 5,000
polls) they lowered NDCG@10 from 0.187 to 0.153-0.163 without lifting cold-poll recall,
so the learned blend leaves them out.

**History twins.** One blend for every user must compromise between users with a few
polls and users with hundreds. A twin is a column times z = log1p(the user's polls) -
log1p(HISTORY_PIVOT_POLLS), learned beside it, so that column's weight for a user is
w + t * z (an affinity's floored at 0 per user; z clipped to the validation users'
range, so a hoarder's history is not extrapolated). Fit decides whether to use them:
the validation users are split in two, a blend with and one without twins is learned on
each half, and each ranks the other half's whole catalog (NDCG@10 of their targets);
twins stay only if they rank better. Judged on the candidate pools instead, twins looked
better on Amazon Toys and Sports, where the test folds said they were worse. Measured
(docs/public-data.md, "History twins"): on for MovieLens 100k and the demo (+5.5 %,
+1.5 % NDCG@10), off or level elsewhere. Until session 28 the judgement scored each
user's top 10 in poll-id order, not best first; with the ranks read, it decides
differently in a few folds of most datasets, within noise either way on the test users
(docs/public-data.md, "History twins", session 28).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recsys.arrays import top_k
from recsys.recipes.user_personalization.components import (
    BaseComponent,
    Recency,
    Rerank,
    rerank,
)
from recsys.recipes.user_personalization.settings import (
    BLEND_INVERSE_L2,
    BLEND_KEPT_FEATURES_BYTES,
    BLEND_MAX_ITERATIONS,
    HISTORY_PIVOT_POLLS,
    HISTORY_TWINS_MIN_USERS,
    MIN_VALIDATION_USERS,
    POLL_AGE_EDGES_DAYS,
    POOL_HEAD_PER_COLUMN,
    POOL_NEGATIVES,
    POOL_RANDOM_POLLS,
)

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization

# Used when the validation split is too small to learn from (tiny catalogs, tests).
DEFAULT_BLEND: dict[str, float] = {
    "collaborative": 1.0, "content": 1.0, "popularity": 0.2, "appeal": 0.0,
    "segment": 0.3, "coldness": 0.0, "cold_collaborative": 0.0, "cold_content": 0.0,
    "item_item": 1.0, "item_item_recent": 0.0, "sequence": 0.0, "walk": 0.0,
}
DEFAULT_AGE_WEIGHTS = (0.0, 1.0, 0.9, 0.8, 0.6, 0.4, 0.2, 0.1, 0.0, 0.0)


def default_weights(components: Sequence[BaseComponent]) -> dict[str, float]:
    """The blend used when there is too little validation to learn one: the default
    weights of the registered components, 0 for every other's."""
    owned = {w for c in components for w in c.weights}
    return {f: (w if f in owned else 0.0) for f, w in DEFAULT_BLEND.items()}


def candidate_pool(features: np.ndarray, seen: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """The polls (ids, sorted) a validation user's blend rows are drawn from: each
    column's top POOL_HEAD_PER_COLUMN unseen polls and POOL_RANDOM_POLLS random ones."""
    n_items = features.shape[1]
    k = min(POOL_HEAD_PER_COLUMN, n_items - 1)
    heads = [rng.integers(0, n_items, POOL_RANDOM_POLLS)]
    for row in features:
        if k > 0 and row.max() > row.min():  # a constant column has no head
            row = row.copy()
            row[seen] = -np.inf
            heads.append(top_k(row, k))
    pool = np.unique(np.concatenate(heads))
    return pool[~np.isin(pool, seen)]


def twin_name(column: str) -> str:
    """The blend weight of a column's history twin."""
    return column + "_x_history"


def history_z(polls: int) -> float:
    """A user's history length as the twins read it: 0 at HISTORY_PIVOT_POLLS polls."""
    return float(np.log1p(polls) - np.log1p(HISTORY_PIVOT_POLLS))


def _affinities(up: UserPersonalization) -> set[str]:
    return {f for c in up._registered() for f in c.affinities}


def twinned_columns(up: UserPersonalization) -> list[str]:
    """The columns that may get a history twin: the affinities and the segment lift."""
    affinities = _affinities(up)
    return [f for f in up._blend_features() if f in affinities or f == "segment"]


def personal_weights(columns: np.ndarray, twins: np.ndarray, z: float,
                     floored: np.ndarray) -> np.ndarray:
    """One user's weights, w + t * z, each ``floored`` one (an affinity) at least 0:
    the one rule behind both fit's judgement of the twins and serving."""
    moved = columns + twins * z
    return np.where(floored, np.maximum(moved, 0.0), moved)


def user_weights(up: UserPersonalization, user_id: str | None) -> dict[str, float]:
    """The blend's weights for this user: ``up.blend_`` moved by its history twins
    (:func:`personal_weights`, z clipped to the validation users' range)."""
    z_range = getattr(up, "history_z_range_", None)
    if z_range is None:
        return up.blend_
    seen = up.interacted_.get(user_id) if user_id is not None else None
    z = min(max(history_z(0 if seen is None else len(seen)), z_range[0]), z_range[1])
    weights = dict(up.blend_)
    # The twinned columns are those fit gave a twin weight (kept in blend_, so a saved
    # model needs nothing else).
    names = [n for n in up.blend_ if twin_name(n) in up.blend_]
    affinities = _affinities(up)
    moved = personal_weights(np.array([weights[n] for n in names]),
                             np.array([weights[twin_name(n)] for n in names]), z,
                             np.array([n in affinities for n in names], bool))
    weights.update(zip(names, moved.tolist()))
    return weights


@dataclass
class _Drawn:
    """One validation user's blend rows (candidate pool: columns then age steps)."""

    rows: np.ndarray
    labels: np.ndarray
    user_id: str
    relevant: np.ndarray  # the targets the user had not touched before
    z: float
    # The user's whole-catalog columns and age steps (``up._features``), kept by the
    # draw for the twins judgement while BLEND_KEPT_FEATURES_BYTES lasts (else None).
    catalog: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class _Blend:
    """Weights as served: one per column, one per twin (0 where not learned), ages."""

    columns: np.ndarray
    twins: np.ndarray
    ages: np.ndarray

    def scores(self, features: np.ndarray, ages: np.ndarray, z: float,
               floored: np.ndarray) -> np.ndarray:
        return personal_weights(self.columns, self.twins, z, floored) @ features + self.ages[ages]


def validation_targets(up: UserPersonalization, users: np.ndarray, items: np.ndarray,
                       is_target: np.ndarray) -> dict[str, np.ndarray]:
    """Each validation user's withheld polls that they had not touched before (poll
    indices), in order of the users' first target; users without any, or without
    visible history, are left out."""
    targets: dict[int, set[int]] = {}
    for u, i in zip(users[is_target].tolist(), items[is_target].tolist()):
        targets.setdefault(u, set()).add(i)
    out: dict[str, np.ndarray] = {}
    for u, relevant in targets.items():
        user_id = up.user_ids_[u]
        if user_id not in up.recent_:
            continue
        relevant_arr = np.fromiter(relevant, np.int64)
        relevant_arr = relevant_arr[~np.isin(relevant_arr, up.interacted_[user_id])]
        if len(relevant_arr):
            out[user_id] = relevant_arr
    return out


def _draw(up: UserPersonalization, targets: dict[str, np.ndarray]) -> list[_Drawn]:
    """Each validation user's candidate-pool rows, as the blend learns from them."""
    rng = np.random.default_rng(up.random_state + 1)
    drawn: list[_Drawn] = []
    room = BLEND_KEPT_FEATURES_BYTES
    for user_id, relevant_arr in targets.items():
        t_ref = float(up.recent_[user_id][2][-1])
        features, ages = up._features(user_id, t_ref)
        seen = up.interacted_[user_id]
        pool = candidate_pool(features, seen, rng)
        pool_targets = np.isin(pool, relevant_arr)
        if not pool_targets.any():
            continue  # no target among the contenders: nothing to tell them apart by
        negatives = pool[~pool_targets]
        negatives = rng.choice(negatives, size=min(POOL_NEGATIVES, len(negatives)),
                               replace=False)
        chosen = np.concatenate([pool[pool_targets], negatives])
        # A poll first dated after t_ref is one created since: at serving (t_ref = now)
        # that is the youngest step, never the "from the future" step 0.
        rows = np.hstack([features[:, chosen].T,
                          Recency.design(np.maximum(ages[chosen], 1), up._recency_on)])
        labels = np.r_[np.ones(int(pool_targets.sum())), np.zeros(len(negatives))]
        catalog = None
        if features.nbytes + len(ages) <= room:
            catalog = (features, ages.astype(np.uint8))  # a step fits a byte
            room -= features.nbytes + len(ages)
        drawn.append(_Drawn(rows, labels, user_id, relevant_arr, history_z(len(seen)),
                            catalog))
    return drawn


def _fit(up: UserPersonalization, drawn: Sequence[_Drawn], n_columns: int,
         twinned: np.ndarray, floored: np.ndarray) -> _Blend:
    """The logistic regression over the users ``drawn``; ``twinned``: the columns that
    get a history twin (none: the plain blend)."""
    from sklearn.linear_model import LogisticRegression

    rows = np.vstack([d.rows for d in drawn])
    z = np.concatenate([np.full(len(d.labels), d.z) for d in drawn])
    X = np.hstack([rows[:, :n_columns], rows[:, twinned] * z[:, None], rows[:, n_columns:]])
    y = np.concatenate([d.labels for d in drawn])
    n = n_columns + len(twinned)
    # The L2 penalty sees each column in its own units: an item-item affinity of ~0.003
    # needs a weight of ~1,000, which the penalty pushed to 0, so a useful column lost
    # to its scale. Scaled to unit spread, every column pays the same for its weight.
    scale = X[:, :n].std(axis=0)
    scale[scale == 0] = 1.0
    X[:, :n] /= scale
    model = LogisticRegression(C=BLEND_INVERSE_L2, fit_intercept=True,
                               max_iter=BLEND_MAX_ITERATIONS)
    model.fit(X, y)
    coef = model.coef_.ravel().copy()
    coef[:n] /= scale
    columns = coef[:n_columns].copy()
    twins = np.zeros(n_columns)
    twins[twinned] = coef[n_columns:n]
    # A negative weight on an affinity would say "show what the user dislikes": that
    # is validation noise, never a preference, so it is floored at zero (and so is each
    # user's weight, w + t * z, where it is served). A twin keeps its own weight: a
    # column dropped for most users may still count for long histories.
    columns[floored] = np.maximum(columns[floored], 0.0)
    # Every row has exactly one age step, so the unpenalised intercept belongs to each
    # step's weight; without it L2 pulled a rarely seen step towards 0, i.e. above the
    # well-seen (negative) steps, and old polls outranked new ones on small data.
    steps = coef[n:] + model.intercept_[0]
    # An age step no validation poll fell in (e.g. older than the whole dataset) has
    # an untrained weight of 0; it takes the weight of the nearest step that was seen.
    seen = np.flatnonzero(X[:, n:].sum(0) > 0)
    ages = np.interp(np.arange(len(POLL_AGE_EDGES_DAYS) + 1), seen, steps[seen])
    if not up._recency_on:
        ages[:] = 0
    return _Blend(columns, twins, ages.astype(np.float32))


def _twins_held_out_ndcg(up: UserPersonalization, drawn: Sequence[_Drawn], n_columns: int,
                       twinned: np.ndarray, floored: np.ndarray) -> tuple[float, float]:
    """NDCG@10 of the validation users' targets over their whole catalog, each half
    ranked by a blend learned on the other half, without and with history twins.

    The whole catalog, not the candidate pools the blend learns from: judged on the
    pools, twins looked better on Amazon Toys and Sports, where whole-catalog ranking
    (and the test folds) said they were worse (docs/public-data.md)."""
    from recsys.evaluation.metrics import ndcg_at_k

    order = np.random.default_rng(up.random_state + 2).permutation(len(drawn))
    halves = (order[::2], order[1::2])
    totals = np.zeros(2)
    for learn_on, rank_for in ((0, 1), (1, 0)):
        learned = [drawn[k] for k in halves[learn_on]]
        blends = [_fit(up, learned, n_columns, np.zeros(0, np.int64), floored),
                  _fit(up, learned, n_columns, twinned, floored)]
        low, high = min(d.z for d in learned), max(d.z for d in learned)
        for k in halves[rank_for]:
            d = drawn[k]
            features, ages = (d.catalog if d.catalog is not None else
                              up._features(d.user_id, float(up.recent_[d.user_id][2][-1])))
            seen = up.interacted_[d.user_id]
            relevant = set(d.relevant.tolist())
            for j, b in enumerate(blends):
                score = b.scores(features, ages, min(max(d.z, low), high), floored)
                score[seen] = -np.inf
                # top_k's set comes in no order, and NDCG reads positions: best first,
                # ties to the lower poll id, as a feed ranks them.
                top = top_k(score, 10)
                top = top[np.lexsort((top, -score[top]))]
                totals[j] += ndcg_at_k(top.tolist(), relevant, 10)
    return float(totals[0] / len(drawn)), float(totals[1] / len(drawn))


def learn(up: UserPersonalization, users: np.ndarray, items: np.ndarray, stamps: np.ndarray,
          is_target: np.ndarray) -> None:
    """Fit the blend weights as a logistic regression on validation users' targets,
    with history twins where they rank held-out validation users better."""
    up._refresh_static()
    targets = validation_targets(up, users, items, is_target)
    drawn = _draw(up, targets)
    if len(drawn) < MIN_VALIDATION_USERS:
        return
    names = up._blend_features()
    affinities = _affinities(up)
    floored = np.array([n in affinities for n in names], bool)
    twinned = np.array([names.index(n) for n in twinned_columns(up)], np.int64)
    measured = None
    # Twins need two halves of validation users, and histories of more than one length
    # (with one, a twin is its column times a constant).
    z = [d.z for d in drawn]
    try:
        if len(twinned) and len(drawn) >= HISTORY_TWINS_MIN_USERS and max(z) > min(z):
            measured = _twins_held_out_ndcg(up, drawn, len(names), twinned, floored)
    finally:
        for d in drawn:
            d.catalog = None  # the judgement's alone (up to BLEND_KEPT_FEATURES_BYTES)
    with_twins = measured is not None and measured[1] > measured[0]
    fitted = _fit(up, drawn, len(names), twinned if with_twins else np.zeros(0, np.int64),
                  floored)
    for j, name in enumerate(names):
        up.blend_[name] = float(fitted.columns[j])
        if with_twins and j in twinned:
            up.blend_[twin_name(name)] = float(fitted.twins[j])
    up.history_z_range_ = (min(z), max(z)) if with_twins else None
    up.age_weights_ = fitted.ages
    up.validation_size_ = {"users": len(drawn), "rows": int(sum(len(d.labels) for d in drawn)),
                           "history_twins": with_twins,
                           "history_twins_ndcg": None if measured is None else
                           {"without": round(measured[0], 5), "with": round(measured[1], 5)}}
    if up._has(Rerank.name):
        # The second stage learns from the heads of the learned blend: every validation
        # user with a target, not only those whose candidate pool held one.
        up.validation_size_["rerank"] = rerank.learn(up, targets)
