"""Exploration: what Personalize-style exploration does to new polls and to wasted
impressions, and what impressions data changes (roadmap stage 1, issue 7).

Why a replay on held-out time: exploration only shows its cost and benefit as the feed
moves through time. Models are trained on everything before a global cut-off (the
newest ``HELD_OUT_FRACTION`` of time is held out); then the held-out events are replayed
in time order into each model (``observe``, as the live server gets them; impressions
only in the "with impressions" arm) and, at each user's first held-out event, the user
asks for a feed of ``FEED_DEPTH`` polls, ranked among polls that exist by then. Per feed:

- **new-poll exposure**: share of slots holding polls younger than ``NEW_POLL_AGE``;
- **dead impressions**: share of slots holding polls nobody engages with during the held-out
  window (impressions spent for nothing);
- **NDCG@10** of the feed against the user's held-out polls: the accuracy cost.

Every arm ranks for the same users at the same moments, so arms are compared per user
(paired t deciding, Wilcoxon and bootstrap beside, Holm over the family) against
exploration weight 0 of the same impressions arm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.analysis.stats import PairedComparison, paired_comparison, with_holm
from recsys.errors import HunchError
from recsys.evaluation.metrics import ndcg_at_k
from recsys.events import Impression, Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.user_personalization import UserPersonalization

# Personalize's default (0.3), none, and twice the default.
EXPLORATION_WEIGHTS: tuple[float, ...] = (0.0, 0.3, 0.6)
HELD_OUT_FRACTION = 0.15  # ~2 of 14 demo days: enough requests, most history kept
FEED_DEPTH = 10  # two phone screens, matching NDCG@10
NEW_POLL_AGE = 86_400  # "new" = posted in the last day: most engagement comes in hours
MAX_REQUESTS = 600  # users replayed; each adds one feed per arm, enough for paired tests
NEW_SHARE, DEAD_SHARE, NDCG = "new_poll_share", "dead_impression_share", "ndcg_at_10"
METRICS = (NEW_SHARE, DEAD_SHARE, NDCG)


class ExplorationReplayError(HunchError):
    """The replay cannot run on this data (say what is missing)."""


@dataclass
class ExplorationResult:
    cutoff: int
    requests: int
    arms: dict[str, dict[str, float]]
    comparisons: list[PairedComparison]
    per_user: dict[str, dict[str, list[float]]] = field(repr=False, default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "requests": self.requests, "arms": self.arms,
                "comparisons": [c.to_json() for c in self.comparisons]}


def arm_name(weight: float, with_impressions: bool) -> str:
    return f"weight {weight:g}, {'with' if with_impressions else 'without'} impressions"


def exploration_replay(interactions: Sequence[Interaction],
                       items: Mapping[str, Mapping[str, Any]],
                       users: Mapping[str, Mapping[str, Any]], *,
                       impressions: Sequence[Impression] = (),
                       weights: Sequence[float] = EXPLORATION_WEIGHTS,
                       held_out_fraction: float = HELD_OUT_FRACTION,
                       max_requests: int = MAX_REQUESTS, seed: int = 0,
                       recipe_params: Mapping[str, Any] | None = None,
                       progress: Callable[[str], None] | None = None) -> ExplorationResult:
    """Replay the held-out time through every (weight, impressions) arm; see module doc."""
    say = progress or (lambda _m: None)
    events = sorted(interactions, key=lambda e: e.timestamp)
    if len(events) < 100:
        raise ExplorationReplayError(f"only {len(events)} interactions; need at least 100")
    cutoff = events[int(len(events) * (1 - held_out_fraction))].timestamp
    train = [e for e in events if e.timestamp < cutoff]
    later = [e for e in events if e.timestamp >= cutoff]
    known_users = {e.user_id for e in train}
    first: dict[str, Interaction] = {}
    relevant: dict[str, set[str]] = {}
    for e in later:
        if e.user_id in known_users:
            first.setdefault(e.user_id, e)
            relevant.setdefault(e.user_id, set()).add(e.item_id)
    requests = sorted(first.values(), key=lambda e: (e.timestamp, e.user_id))
    if len(requests) > max_requests:
        pick = np.random.default_rng(seed).choice(len(requests), max_requests, replace=False)
        requests = [requests[i] for i in sorted(pick)]
    if len(requests) < 10:
        raise ExplorationReplayError(f"only {len(requests)} users act after the cut-off; "
                                     "need 10 (more days or users)")
    engaged = {e.item_id for e in later}
    created = {pid: float(m["CREATION_TIMESTAMP"]) for pid, m in items.items()
               if m.get("CREATION_TIMESTAMP") not in (None, "")}
    imps = sorted(impressions, key=lambda i: i.timestamp)
    train_imps = [i for i in imps if i.timestamp < cutoff]
    later_imps = [i for i in imps if i.timestamp >= cutoff]
    # Polls are known to the model from the start but may only be served once posted.
    arms = [(w, with_imps) for with_imps in (False, True) for w in weights]
    if not impressions:
        arms = [(w, False) for w in weights]
    per_user: dict[str, dict[str, np.ndarray]] = {}
    for w, with_imps in arms:
        name = arm_name(w, with_imps)
        say(f"exploration replay: {name}")
        model = UserPersonalization(**{"random_state": seed, **(recipe_params or {}),
                                       "exploration_weight": w}).fit(
            TrainingData(train, items, users, train_imps if with_imps else []))
        stream = sorted([*later, *(later_imps if with_imps else [])],
                        key=lambda e: e.timestamp)
        observed = 0
        out = {m: np.zeros(len(requests)) for m in METRICS}
        for j, req in enumerate(requests):
            # Everything before the request is folded in, as on the live server.
            position = observed
            while position < len(stream) and stream[position].timestamp < req.timestamp:
                position += 1
            if position > observed:
                model.observe(stream[observed:position])
                observed = position
            now = req.timestamp
            feed = [s.item_id for s in model.recommend(
                req.user_id, FEED_DEPTH, now=now,
                allow=lambda p: created.get(p, now) <= now)]
            if not feed:
                continue
            out[NEW_SHARE][j] = sum(now - created.get(p, 0) < NEW_POLL_AGE for p in feed) / len(feed)
            out[DEAD_SHARE][j] = sum(p not in engaged for p in feed) / len(feed)
            out[NDCG][j] = ndcg_at_k(feed, relevant[req.user_id], 10)
        per_user[name] = out
    comparisons = []
    for w, with_imps in arms:
        base = arm_name(0.0, with_imps)
        if w == 0.0 or base not in per_user:
            continue
        for m in METRICS:
            comparisons.append(paired_comparison(m, arm_name(w, with_imps), base,
                                                 per_user[arm_name(w, with_imps)][m],
                                                 per_user[base][m], seed=seed))
    if impressions:
        for w in weights:
            for m in (NEW_SHARE, DEAD_SHARE):
                a, b = arm_name(w, True), arm_name(w, False)
                comparisons.append(paired_comparison(m, a, b, per_user[a][m], per_user[b][m],
                                                     seed=seed))
    summary = {n: {m: float(v.mean()) for m, v in ms.items()} for n, ms in per_user.items()}
    return ExplorationResult(cutoff, len(requests), summary, with_holm(comparisons),
                             {n: {m: v.tolist() for m, v in ms.items()}
                              for n, ms in per_user.items()})

