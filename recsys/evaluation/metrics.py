"""Amazon Personalize's offline metrics, computed per user so that intervals can follow.

Personalize reports a solution version's quality as the mean over held-out users of
per-user ranking metrics, plus catalog coverage. Each function here scores one ranked
list against one set of relevant polls, so the evaluation can keep every user's number
(bootstrap intervals and paired comparisons need them) instead of only the mean.

Written by hand rather than taken from scikit-learn: ``sklearn.metrics.ndcg_score``
ranks by scores over the whole catalog and normalises differently from Personalize's
definition (gain ``1/log(1 + position)``, ideal = all relevant polls first), and these are
a few lines each.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence

# Personalize's metric names, in the order its console shows them.
PERSONALIZE_METRICS: tuple[str, ...] = (
    "coverage",
    "mean_reciprocal_rank_at_25",
    "normalized_discounted_cumulative_gain_at_5",
    "normalized_discounted_cumulative_gain_at_10",
    "normalized_discounted_cumulative_gain_at_25",
    "precision_at_5",
    "precision_at_10",
    "precision_at_25",
)
# Recall is not a Personalize metric; the slices use it because precision on a slice of
# few relevant polls is bounded by how many there are, recall is not.
RECALL_METRIC = "recall_at_25"
# The metrics that exist per user (coverage is a property of all lists together).
PER_USER_METRICS: tuple[str, ...] = PERSONALIZE_METRICS[1:] + (RECALL_METRIC,)
# Personalize evaluates the top 25, its default numResults.
EVALUATION_DEPTH = 25


def precision_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the first ``k`` positions that hold a relevant poll (divides by ``k``,
    as Personalize does, even when fewer than ``k`` polls are relevant)."""
    return sum(1 for item in ranked[:k] if item in relevant) / k


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant polls found in the first ``k`` positions."""
    if not relevant:
        return 0.0
    return sum(1 for item in ranked[:k] if item in relevant) / len(relevant)


def reciprocal_rank_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1 / position of the first relevant poll within the first ``k``, else 0."""
    for position, item in enumerate(ranked[:k], start=1):
        if item in relevant:
            return 1.0 / position
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Normalised discounted cumulative gain with Personalize's gain 1/log(1 + position).

    The ideal list puts ``min(k, len(relevant))`` relevant polls first. The log base
    cancels in the ratio.
    """
    if not relevant:
        return 0.0
    dcg = sum(
        1.0 / math.log(1 + position)
        for position, item in enumerate(ranked[:k], start=1)
        if item in relevant
    )
    ideal = sum(1.0 / math.log(1 + position) for position in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal


def user_metrics(ranked: Sequence[str], relevant: Collection[str]) -> dict[str, float]:
    """Every per-user metric (:data:`PER_USER_METRICS`) for one ranked list."""
    relevant = set(relevant)
    out = {"mean_reciprocal_rank_at_25": reciprocal_rank_at_k(ranked, relevant, 25)}
    for k in (5, 10, 25):
        out[f"normalized_discounted_cumulative_gain_at_{k}"] = ndcg_at_k(ranked, relevant, k)
    for k in (5, 10, 25):
        out[f"precision_at_{k}"] = precision_at_k(ranked, relevant, k)
    out[RECALL_METRIC] = recall_at_k(ranked, relevant, 25)
    return out


def coverage(ranked_lists: Iterable[Sequence[str]], catalog_size: int) -> float:
    """Distinct polls recommended across all evaluated users / all polls in the catalog."""
    if catalog_size <= 0:
        return 0.0
    seen: set[str] = set()
    for ranked in ranked_lists:
        seen.update(ranked[:EVALUATION_DEPTH])
    return len(seen) / catalog_size
