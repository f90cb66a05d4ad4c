"""Poll text: what each text field adds to User-Personalization, overall and on cold polls
(roadmap stage 4, issue 7).

Why leave-one-out: the fields overlap (the question and the options name the same topic),
so "only this field" overstates a field that others already cover. Each variant drops
one field from the full model; the full model and a model without any text bracket them.
Every variant is trained on the same Personalize split (recsys.evaluation) and scored on
the same held-out users, so the comparisons are paired per user (paired t deciding,
Wilcoxon and a bootstrap interval beside it, Holm over the family). Overall quality is
NDCG@10; on cold polls (fewer than ``COLD_POLL_MAX_TRAINING_INTERACTIONS`` training
interactions, where only metadata can place a poll) it is recall@25, as ``hunch
evaluate`` reports it, because few held-out polls per user are cold.

Where text matters most is among cold candidates (``hunch evaluate``'s
``cold_candidates`` slice): ranking only polls with fewer than
``COLD_POLL_MAX_TRAINING_INTERACTIONS`` training interactions, where collaborative
signal is thin. There each field is also measured *alone* ("only <field>" against no
text), by the AUC of the user's cold relevant polls among all cold candidates (every
cold poll's rank counts, not just a top 25, so small effects are not lost to the cut).
``field_ranking`` orders the fields by that gain and marks adjacent fields whose paired
difference is not distinguishable from 0 as tied. On the demo data, which plants a
field order (ground_truth.json's ``text_field_order``), the most informative field's
gain is clear; the rest overall add ~0.01 NDCG and their single-field gains are small.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.analysis.stats import PairedComparison, paired_comparison, with_holm
from recsys.shared_fits import shared_fits
from recsys.errors import HunchError
from recsys.evaluation.evaluate import (
    COLD_POLL_MAX_TRAINING_INTERACTIONS,
    CommentTexts,
    fold_items,
)
from recsys.evaluation.intervals import paired_difference
from recsys.evaluation.metrics import EVALUATION_DEPTH, ndcg_at_k, recall_at_k
from recsys.evaluation.split import personalize_split
from recsys.events import Impression, Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.user_personalization import TEXT_FIELDS, UserPersonalization

FULL, NO_TEXT = "all text", "no text"
WITHOUT = "without "
ONLY = "only "
NDCG, COLD_RECALL = "ndcg_at_10", "cold_poll_recall_at_25"
COLD_AUC = "cold_candidate_auc"
# A quarter of users held out: paired tests over users need more than Personalize's 10 %
# to see a field's small contribution (the same reason as in follow_impact).
HOLDOUT_FRACTION = 0.25


class TextAblationError(HunchError):
    """The text ablation cannot run on this data (say what is missing)."""


@dataclass
class TextAblationResult:
    users: int
    cold_users: int
    variants: dict[str, dict[str, float]]
    comparisons: list[PairedComparison]
    fields: tuple[str, ...] = ()
    per_user: dict[str, dict[str, list[float]]] = field(repr=False, default_factory=dict)

    def field_contributions(self) -> list[dict[str, Any]]:
        """Per field: how much the full model loses when the field is dropped."""
        rows = []
        for c in self.comparisons:
            if c.treatment != FULL:
                continue
            if c.baseline.startswith(WITHOUT):
                name = c.baseline[len(WITHOUT):]
            elif c.baseline == NO_TEXT and len(self.fields) == 1:
                name = self.fields[0]  # with one field, dropping it drops all text
            else:
                continue
            rows.append({"field": name, "metric": c.metric,
                         "gain": c.difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
                         "holm_p": c.holm_p, "significant": c.significant})
        return rows

    def field_ranking(self) -> list[dict[str, Any]]:
        """Fields by what each alone adds to no text on cold candidates, most first
        (empty when single-field models were not run).

        Point estimates order fields whose gains differ by less than the noise, so each
        row also compares the field with the next one, paired over the same cold-poll
        users: ``vs_next`` (this field's AUC minus the next one's) with its 95 %
        bootstrap interval, and ``tied_with_next`` when that interval includes 0 (the
        order of the two is not shown by the data). Uncorrected: a tie under this
        interval is a tie under any multiple-testing correction too. The last row, and
        rows of a result without per-user values, have ``None`` there."""
        rows = [{"field": c.treatment[len(ONLY):], "gain": c.difference,
                 "ci_low": c.ci_low, "ci_high": c.ci_high, "holm_p": c.holm_p,
                 "significant": c.significant}
                for c in self.comparisons
                if c.metric == COLD_AUC and c.treatment.startswith(ONLY)
                and c.baseline == NO_TEXT]
        rows.sort(key=lambda r: r["gain"], reverse=True)
        for row, below in zip(rows, [*rows[1:], None]):
            row.update(vs_next=None, vs_next_ci_low=None, vs_next_ci_high=None,
                       tied_with_next=None)
            a = self.per_user.get(ONLY + row["field"], {}).get(COLD_AUC)
            b = below and self.per_user.get(ONLY + below["field"], {}).get(COLD_AUC)
            if a is None or b is None or len(a) != len(b) or len(a) < 2:
                continue
            step = paired_difference(np.asarray(a), np.asarray(b))
            tied = (step.low is None or step.high is None
                    or step.low <= 0 <= step.high)
            row.update(vs_next=step.mean, vs_next_ci_low=step.low,
                       vs_next_ci_high=step.high, tied_with_next=bool(tied))
        return rows

    def to_json(self) -> dict[str, Any]:
        return {"users": self.users, "cold_poll_users": self.cold_users,
                "fields": list(self.fields),
                "variants": self.variants,
                "comparisons": [c.to_json() for c in self.comparisons],
                "field_contributions": self.field_contributions(),
                "field_ranking": self.field_ranking()}


def text_ablation(interactions: Sequence[Interaction], items: Mapping[str, Mapping[str, Any]],
                  users: Mapping[str, Mapping[str, Any]], *,
                  impressions: Sequence[Impression] = (), fields: Sequence[str] = TEXT_FIELDS,
                  seed: int = 0, holdout_fraction: float = HOLDOUT_FRACTION,
                  recipe_params: Mapping[str, Any] | None = None,
                  comment_texts: CommentTexts | None = None,
                  leave_one_out: bool = True, single_fields: bool = True,
                  progress: Callable[[str], None] | None = None) -> TextAblationResult:
    """Train the full, no-text, leave-one-field-out and single-field models and compare
    them per user. ``comment_texts`` (the demo's comments.csv) rebuilds COMMENTS from the
    training events; without it COMMENTS is dropped, as in ``hunch evaluate``."""
    say = progress or (lambda _m: None)
    unknown = set(fields) - set(TEXT_FIELDS)
    if unknown:
        raise TextAblationError(f"unknown text field(s) {sorted(unknown)}; choose from "
                                f"{', '.join(TEXT_FIELDS)}")
    present = [f for f in fields if any(str(m.get(f) or "").strip() for m in items.values())]
    if not present:
        raise TextAblationError("items.csv has no text in " + ", ".join(fields)
                                + "; the ablation needs textual item fields")
    split = personalize_split(interactions, seed=seed, holdout_fraction=holdout_fraction)
    # COMMENTS from every user's comments would leak held-out users' future ones.
    items = fold_items(items, split.training, comment_texts)
    held = split.scored_users
    if len(held) < 10:
        raise TextAblationError(f"only {len(held)} held-out users to score; need 10")
    counts = Counter(e.item_id for e in split.training)
    cold = [{i for i in u.relevant_items if counts[i] < COLD_POLL_MAX_TRAINING_INTERACTIONS}
            for u in held]
    has_cold = np.array([bool(c) for c in cold])
    cold_catalog = frozenset(i for i in set(items) | set(counts)
                             if counts[i] < COLD_POLL_MAX_TRAINING_INTERACTIONS)
    data = TrainingData(split.training, items, users, split.training_impressions(impressions))
    variants: list[tuple[str, dict[str, Any]]] = [
        (FULL, {"text_fields": tuple(present)}), (NO_TEXT, {"use_text": False})]
    if len(present) > 1 and leave_one_out:
        variants += [(WITHOUT + f, {"text_fields": tuple(x for x in present if x != f)})
                     for f in present]
    if len(present) > 1 and single_fields:
        variants += [(ONLY + f, {"text_fields": (f,)}) for f in present]
    per_user: dict[str, dict[str, np.ndarray]] = {}
    # Text fields never enter EASE's user-poll matrix: its fit is shared.
    with shared_fits():
        for name, params in variants:
            say(f"text ablation: training '{name}'")
            model = UserPersonalization(**{"random_state": seed, **(recipe_params or {}),
                                           **params}).fit(data)
            ndcg, recall = np.zeros(len(held)), np.zeros(len(held))
            auc = []
            for j, u in enumerate(held):
                ranked = [s.item_id for s in model.recommend(u.user_id, EVALUATION_DEPTH,
                                                             now=u.cutoff, exclude=u.input_items)]
                ndcg[j] = ndcg_at_k(ranked, u.relevant_items, 10)
                if cold[j]:
                    recall[j] = recall_at_k(ranked, cold[j], EVALUATION_DEPTH)
                    among = [s.item_id for s in model.recommend(
                        u.user_id, len(cold_catalog), now=u.cutoff, exclude=u.input_items,
                        allow=cold_catalog.__contains__)]
                    auc.append(_auc(among, cold[j]))
            per_user[name] = {NDCG: ndcg, COLD_RECALL: recall[has_cold], COLD_AUC: np.array(auc)}
    comparisons = []
    for name, _ in variants[1:]:
        if name.startswith(ONLY):  # a field alone against no text, where text matters
            comparisons.append(paired_comparison(COLD_AUC, name, NO_TEXT,
                                                 per_user[name][COLD_AUC],
                                                 per_user[NO_TEXT][COLD_AUC], seed=seed))
            continue
        for metric in (NDCG, COLD_RECALL, COLD_AUC):
            comparisons.append(paired_comparison(metric, FULL, name, per_user[FULL][metric],
                                                 per_user[name][metric], seed=seed))
    summary = {name: {m: float(v.mean()) if len(v) else float("nan") for m, v in ms.items()}
               for name, ms in per_user.items()}
    return TextAblationResult(len(held), int(has_cold.sum()), summary, with_holm(comparisons),
                              tuple(present),
                              {n: {m: v.tolist() for m, v in ms.items()}
                               for n, ms in per_user.items()})


def _auc(ranked: Sequence[str], relevant: set[str]) -> float:
    """Share of (relevant, other) pairs of ``ranked`` in which the relevant poll is
    higher: 1 = all relevant polls first, 0.5 = no better than chance."""
    positions = [k for k, i in enumerate(ranked) if i in relevant]
    others = len(ranked) - len(positions)
    if not positions or not others:
        return 0.5
    below = sum(others - (k - j) for j, k in enumerate(positions))  # others after each
    return below / (len(positions) * others)
