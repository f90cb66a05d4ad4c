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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from recsys.arrays import top_k
from recsys.recipes.user_personalization.components import BaseComponent, Recency
from recsys.recipes.user_personalization.settings import (
    BLEND_INVERSE_L2,
    BLEND_MAX_ITERATIONS,
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


def learn(up: UserPersonalization, users: np.ndarray, items: np.ndarray, stamps: np.ndarray,
          is_target: np.ndarray) -> None:
    """Fit the blend weights as a logistic regression on validation users' targets."""
    from sklearn.linear_model import LogisticRegression

    up._refresh_static()
    rng = np.random.default_rng(up.random_state + 1)
    targets: dict[int, set[int]] = {}
    for u, i in zip(users[is_target].tolist(), items[is_target].tolist()):
        targets.setdefault(u, set()).add(i)
    rows: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for u, relevant in targets.items():
        user_id = up.user_ids_[u]
        recent = up.recent_.get(user_id)
        if recent is None:
            continue
        t_ref = float(recent[2][-1])
        features, ages = up._features(user_id, t_ref)
        relevant_arr = np.fromiter(relevant, np.int64)
        relevant_arr = relevant_arr[~np.isin(relevant_arr, up.interacted_[user_id])]
        if not len(relevant_arr):
            continue
        pool = candidate_pool(features, up.interacted_[user_id], rng)
        pool_targets = np.isin(pool, relevant_arr)
        if not pool_targets.any():
            continue  # no target among the contenders: nothing to tell them apart by
        negatives = pool[~pool_targets]
        negatives = rng.choice(negatives, size=min(POOL_NEGATIVES, len(negatives)),
                               replace=False)
        chosen = np.concatenate([pool[pool_targets], negatives])
        # A poll first dated after t_ref is one created since: at serving (t_ref = now)
        # that is the youngest step, never the "from the future" step 0.
        rows.append(np.hstack([features[:, chosen].T,
                               Recency.design(np.maximum(ages[chosen], 1), up._recency_on)]))
        labels.append(np.r_[np.ones(int(pool_targets.sum())), np.zeros(len(negatives))])
    if len(rows) < MIN_VALIDATION_USERS:
        return
    X = np.vstack(rows)
    y = np.concatenate(labels)
    names = up._blend_features()
    # The L2 penalty sees each column in its own units: an item-item affinity of ~0.003
    # needs a weight of ~1,000, which the penalty pushed to 0, so a useful column lost
    # to its scale. Scaled to unit spread, every column pays the same for its weight.
    scale = X[:, :len(names)].std(axis=0)
    scale[scale == 0] = 1.0
    X[:, :len(names)] /= scale
    model = LogisticRegression(C=BLEND_INVERSE_L2, fit_intercept=True,
                               max_iter=BLEND_MAX_ITERATIONS)
    model.fit(X, y)
    coef = model.coef_.ravel().copy()
    coef[:len(names)] /= scale
    # Every row has exactly one age step, so the unpenalised intercept belongs to each
    # step's weight; without it L2 pulled a rarely seen step towards 0, i.e. above the
    # well-seen (negative) steps, and old polls outranked new ones on small data.
    coef[len(names):] += model.intercept_[0]
    # A negative weight on an affinity would say "show what the user dislikes": that
    # is validation noise, never a preference, so it is floored at zero.
    affinities = {f for c in up._registered() for f in c.affinities}
    for j, name in enumerate(names):
        up.blend_[name] = max(0.0, float(coef[j])) if name in affinities else float(coef[j])
    # An age step no validation poll fell in (e.g. older than the whole dataset) has
    # an untrained weight of 0; it takes the weight of the nearest step that was seen.
    seen = np.flatnonzero(X[:, len(names):].sum(0) > 0)
    steps = np.arange(len(POLL_AGE_EDGES_DAYS) + 1)
    up.age_weights_ = np.interp(steps, seen, coef[len(names):][seen]).astype(np.float32)
    if not up._recency_on:
        up.age_weights_[:] = 0
    up.validation_size_ = {"users": len(rows), "rows": int(len(y))}
