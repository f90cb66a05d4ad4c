"""The blend: a logistic regression over the registered components' columns plus the
recency component's age steps, learned inside ``fit`` on a validation split carved from
TRAINING users only (Personalize's split shape: the newest 10 % of their events are the
targets and are withheld from everything the blend sees). Negatives per validation user
are hard ones from the current ranking's head and random ones from the whole catalog.

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

from recsys.recipes.user_personalization.components import BaseComponent, Recency
from recsys.recipes.user_personalization.settings import (
    BLEND_INVERSE_L2,
    BLEND_MAX_ITERATIONS,
    HARD_NEGATIVES,
    MIN_VALIDATION_USERS,
    POLL_AGE_EDGES_DAYS,
    RANDOM_NEGATIVES,
    VALIDATION_CANDIDATES,
)

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization

# Used when the validation split is too small to learn from (tiny catalogs, tests).
DEFAULT_BLEND: dict[str, float] = {
    "collaborative": 1.0, "content": 1.0, "popularity": 0.2, "appeal": 0.0,
    "segment": 0.3, "coldness": 0.0, "cold_collaborative": 0.0, "cold_content": 0.0,
    "item_item": 1.0, "item_item_recent": 0.0, "sequence": 0.0,
}
DEFAULT_AGE_WEIGHTS = (0.0, 1.0, 0.9, 0.8, 0.6, 0.4, 0.2, 0.1, 0.0, 0.0)


def default_weights(components: Sequence[BaseComponent]) -> dict[str, float]:
    """The blend used when there is too little validation to learn one: the default
    weights of the registered components, 0 for every other's."""
    owned = {w for c in components for w in c.weights}
    return {f: (w if f in owned else 0.0) for f, w in DEFAULT_BLEND.items()}


def learn(up: UserPersonalization, users: np.ndarray, items: np.ndarray, stamps: np.ndarray,
          is_target: np.ndarray) -> None:
    """Fit the blend weights as a logistic regression on validation users' targets."""
    from sklearn.linear_model import LogisticRegression

    up._refresh_static()
    rng = np.random.default_rng(up.random_state + 1)
    n_items = len(up.item_ids_)
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
        score = up._combine(features, ages)
        score[up.interacted_[user_id]] = -np.inf
        top = np.argpartition(-score, min(VALIDATION_CANDIDATES, n_items - 1))[
            :VALIDATION_CANDIDATES]
        hard = np.setdiff1d(top, relevant_arr)
        hard = rng.choice(hard, size=min(HARD_NEGATIVES, len(hard)), replace=False)
        rand = rng.integers(0, n_items, RANDOM_NEGATIVES)
        rand = np.setdiff1d(rand, np.concatenate([relevant_arr, up.interacted_[user_id]]))
        chosen = np.concatenate([relevant_arr, hard, rand])
        rows.append(np.hstack([features[:, chosen].T,
                               Recency.design(ages[chosen], up._recency_on)]))
        labels.append(np.r_[np.ones(len(relevant_arr)), np.zeros(len(hard) + len(rand))])
    if len(rows) < MIN_VALIDATION_USERS:
        return
    X = np.vstack(rows)
    y = np.concatenate(labels)
    model = LogisticRegression(C=BLEND_INVERSE_L2, fit_intercept=True,
                               max_iter=BLEND_MAX_ITERATIONS)
    model.fit(X, y)
    coef = model.coef_.ravel().copy()
    # Every row has exactly one age step, so the unpenalised intercept belongs to each
    # step's weight; without it L2 pulled a rarely seen step towards 0, i.e. above the
    # well-seen (negative) steps, and old polls outranked new ones on small data.
    names = up._blend_features()
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
