"""Exploration: which polls Personalize-style exploration gives exposure to, what it costs
in accuracy and wasted impressions, and what impressions data changes (roadmap stage 1,
issue 7).

Why a replay on held-out time: exploration only shows its cost and benefit as the feed
moves through time. One User-Personalization model is trained on everything before a
global cut-off (the newest ``HELD_OUT_FRACTION`` of time is held out); every arm starts
from a copy of it that differs only in the exploration weight (read at serving time, so
one fit serves all arms) and in whether it gets impressions data. Then the held-out
events are replayed in time order into each copy (``observe``, as the live server gets
them) and, at each user's first held-out event, the user asks for a feed of
``FEED_DEPTH`` polls at that moment (``now`` = request time), ranked among the polls
posted by then.

What "with impressions" means here. Personalize shrinks a poll's exploration bonus with
its interactions *and* impressions, so impressions data matters through a loop: a poll
the feed keeps showing without getting votes loses its bonus and the next feed explores
another one. The replay therefore records each feed it serves as an impression (the
gateway's ``recordImpressions``) and folds it in before the next request, on top of the
logged impressions (training and held-out: they stand for all the traffic the replay
does not re-serve). The "without impressions" arm gets none of them: no impression
events, and interactions stripped of their ``IMPRESSION`` lists (which the fit would
otherwise count), so its bonus shrinks with interactions only.

Why these metrics. On the demo data the learned recency term already fills most slots
with polls younger than a day at weight 0 (64-92 %, depending on the recipe's version),
so "new-poll share" mostly measures recency and cannot show what exploration is for.
Exploration's bonus targets polls with little evidence (few interactions and
impressions), and its point is to spread exposure over them so their
appeal gets measured. So per feed (paired per user across arms):

- **new-poll share**: slots holding polls younger than ``NEW_POLL_AGE`` (kept for
  continuity; saturated on demo data);
- **unproven-poll share**: slots holding polls with fewer than ``UNPROVEN_INTERACTIONS``
  interactions at request time: the polls exploration is meant to give a chance;
- **dead impressions**: slots holding polls nobody engages with during the held-out window
  (impressions spent for nothing): the cost side;
- **NDCG@10** of the feed against the user's held-out polls: the accuracy cost.

And per arm, over all its feeds (the question is how widely exposure spreads, which no
single feed shows):

- **breadth** (new and unproven): distinct polls shown while new (unproven) / polls that
  were new (unproven) at some moment of the replayed window. Exploration should raise it;
  impressions data should move the bonus from polls already shown to unseen ones (the
  demo data show that it mostly shrinks the bonus, see below);
- **impression Gini** over the polls that were new in the window (never-shown ones count
  as 0): 0 = every new poll shown equally, 1 = all new-poll slots on one poll;
- **top-10 share**: slots of the 10 most shown new polls / all new-poll slots.

Why the **headroom** diagnostic: an unseen poll's bonus is at most ``weight`` times the
request's bonus scale (the gap between its best and its average score, at least
``EXPLORATION_BONUS_SCALE``), so the replay also measures, in the weight-0 arm,
how far each posted unproven poll sits below the feed's last slot and which share of
them a bonus of that size could lift into the feed at all.

What the default demo data show (2,000 users, 5,000 polls, 14 days; 600 feeds per arm;
the bonus scaled to each request's score spread): without impressions data, weight 0.3
and 0.6 raise the new-poll share 0.58 -> 0.66 -> 0.79, the unproven-poll share
0.000 -> 0.027 -> 0.234 and new-poll breadth 0.11 -> 0.18 -> 0.28, at an NDCG@10 cost
of 0.0647 -> 0.0606 -> 0.0366; with impressions data the same weights do much less
(new-poll share 0.59 and 0.61, breadth 0.12 and 0.14, NDCG@10 unchanged), because a
median demo poll has ~400 impressions against ~30 interactions at the cut-off, and
counting impressions divides its bonus (``1 / sqrt(1 + impressions + interactions)``)
by ~3.6. Exposure stays concentrated (Gini of new-poll impressions 0.91-0.96).

Per-feed metrics are compared per user (paired t deciding, Wilcoxon and bootstrap
beside, Holm over the family) against weight 0 of the same impressions arm, and each
weight with against without impressions. Arm-level metrics are compared the same way
with a paired bootstrap over requests (the same resampled users in both arms),
re-centred on the estimate because resampling with replacement shrinks distinct counts;
that interval treats the served feeds as given, so it measures which users happened to ask,
not the run-to-run variation of the feedback loop itself.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import bootstrap

from recsys.analysis.stats import PairedComparison, paired_comparison, with_holm
from recsys.errors import HunchError
from recsys.evaluation.intervals import BOOTSTRAP_SAMPLES, CONFIDENCE_LEVEL
from recsys.evaluation.metrics import ndcg_at_k
from recsys.events import Impression, Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.user_personalization import UserPersonalization
from recsys.recipes.user_personalization.settings import RERANK_HEAD

# Personalize's default (0.3), none, and twice the default.
EXPLORATION_WEIGHTS: tuple[float, ...] = (0.0, 0.3, 0.6)
HELD_OUT_FRACTION = 0.15  # ~2 of 14 demo days: enough requests, most history kept
FEED_DEPTH = 10  # two phone screens, matching NDCG@10
NEW_POLL_AGE = 86_400  # "new" = posted in the last day: most engagement comes in hours
# "Unproven" = fewer than 5 interactions: below that a poll's vote count says little
# about its appeal; on the demo data the median new poll passes 5 within ~3 hours and a
# tenth of them are still below it after a day.
UNPROVEN_INTERACTIONS = 5
# The replay moves a feed through time and a poll counts as new for NEW_POLL_AGE, so the
# events must span at least that long; times closer than this are an order (e.g. a
# converter's synthetic one-second steps), not a clock, and every arm would read zeros.
MIN_EVENT_SPAN = NEW_POLL_AGE
MAX_REQUESTS = 600  # users replayed; each adds one feed per arm, enough for paired tests
TOP_POLLS = 10  # "top-10 share": how much of new-poll exposure the 10 most shown take
NEW_SHARE, UNPROVEN_SHARE = "new_poll_share", "unproven_poll_share"
DEAD_SHARE, NDCG = "dead_impression_share", "ndcg_at_10"
METRICS = (NEW_SHARE, UNPROVEN_SHARE, DEAD_SHARE, NDCG)
BREADTH_NEW, BREADTH_UNPROVEN = "new_poll_breadth", "unproven_poll_breadth"
GINI_NEW, TOP_SHARE_NEW = "new_poll_impression_gini", "new_poll_top10_share"
ARM_METRICS = (BREADTH_NEW, BREADTH_UNPROVEN, GINI_NEW, TOP_SHARE_NEW)
# Metrics compared between "with" and "without impressions" at the same weight: the
# exposure ones (accuracy is compared within each arm against weight 0).
_IMPRESSIONS_METRICS = (NEW_SHARE, UNPROVEN_SHARE, DEAD_SHARE)


class ExplorationReplayError(HunchError):
    """The replay cannot run on this data (say what is missing)."""


@dataclass(frozen=True)
class ArmComparison:
    """``treatment - baseline`` of an arm-level metric, paired bootstrap over requests."""

    metric: str
    treatment: str
    baseline: str
    requests: int
    value_treatment: float
    value_baseline: float
    difference: float
    ci_low: float | None
    ci_high: float | None

    @property
    def significant(self) -> bool:
        """The bootstrap interval of the difference excludes 0."""
        return (self.ci_low is not None and self.ci_high is not None
                and (self.ci_low > 0 or self.ci_high < 0))

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "treatment": self.treatment,
                "baseline": self.baseline, "requests": self.requests,
                "value_treatment": self.value_treatment,
                "value_baseline": self.value_baseline, "difference": self.difference,
                "ci_low": self.ci_low, "ci_high": self.ci_high,
                "significant": self.significant}


@dataclass
class ExplorationResult:
    cutoff: int
    requests: int
    arms: dict[str, dict[str, float]]
    comparisons: list[PairedComparison]
    arm_comparisons: list[ArmComparison] = field(default_factory=list)
    eligible: dict[str, int] = field(default_factory=dict)
    headroom: dict[str, Any] = field(default_factory=dict)
    per_user: dict[str, dict[str, list[float]]] = field(repr=False, default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "requests": self.requests, "arms": self.arms,
                "comparisons": [c.to_json() for c in self.comparisons],
                "arm_comparisons": [c.to_json() for c in self.arm_comparisons],
                "eligible": self.eligible, "headroom": self.headroom}


def arm_name(weight: float, with_impressions: bool) -> str:
    return f"weight {weight:g}, {'with' if with_impressions else 'without'} impressions"


@dataclass
class _Exposure:
    """Which eligible polls each request showed while new / unproven (requests x polls)."""

    new: sp.csr_matrix
    unproven: sp.csr_matrix

    def values(self) -> dict[str, float]:
        """Arm-level metrics over all requests."""
        return {m: float(self.value(m)[0]) for m in ARM_METRICS}

    def value(self, metric: str, weights: np.ndarray | None = None) -> np.ndarray:
        """``metric`` per row of ``weights`` (resamples x requests: how often each
        request is drawn); one row of ones when None."""
        matrix = self.unproven if metric == BREADTH_UNPROVEN else self.new
        if weights is None:
            weights = np.ones((1, matrix.shape[0]))
        shown = np.asarray((matrix.T @ weights.T).T)  # resamples x polls
        if metric in (BREADTH_NEW, BREADTH_UNPROVEN):
            return _breadth(shown)
        return _gini(shown) if metric == GINI_NEW else _top_share(shown)


def _breadth(shown: np.ndarray) -> np.ndarray:
    if shown.shape[1] == 0:
        return np.zeros(len(shown))
    return (shown > 0).mean(1)


def _gini(shown: np.ndarray) -> np.ndarray:
    """Gini coefficient of exposure per row (0 = equal); 0 when nothing was shown."""
    n = shown.shape[1]
    total = shown.sum(1)
    if n == 0:
        return np.zeros(len(shown))
    ranks = np.arange(1, n + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gini = 2 * (np.sort(shown, 1) @ ranks) / (n * total) - (n + 1) / n
    return np.where(total > 0, gini, 0.0)


def _top_share(shown: np.ndarray) -> np.ndarray:
    total = shown.sum(1)
    k = min(TOP_POLLS, shown.shape[1])
    top = -np.partition(-shown, k - 1, axis=1)[:, :k].sum(1) if k else np.zeros(len(shown))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, top / total, 0.0)


def _without_impressions(events: Sequence[Interaction]) -> list[Interaction]:
    return [replace(e, impression=()) if e.impression else e for e in events]


def _check_weights(weights: Sequence[float]) -> None:
    bad = [w for w in weights if not 0.0 <= w <= 1.0]
    if bad:
        raise ExplorationReplayError(f"exploration weights must be in [0, 1], got {bad}")
    if 0.0 not in weights:
        raise ExplorationReplayError("weights must include 0: every arm is compared "
                                     "against no exploration")


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
    _check_weights(weights)
    events = sorted(interactions, key=lambda e: e.timestamp)
    if len(events) < 100:
        raise ExplorationReplayError(f"only {len(events)} interactions; need at least 100")
    span = events[-1].timestamp - events[0].timestamp
    if span < MIN_EVENT_SPAN:
        raise ExplorationReplayError(
            f"interaction times span {span} s; the replay needs at least "
            f"{MIN_EVENT_SPAN / 86_400:g} day of real event times (a poll is new for "
            f"{NEW_POLL_AGE} s), and times this close are an order, not a clock")
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
    # Interaction times per poll: "unproven" is judged at each request's moment.
    votes: dict[str, list[int]] = {}
    for e in events:
        votes.setdefault(e.item_id, []).append(e.timestamp)

    def interactions_before(poll: str, now: float) -> int:
        return bisect.bisect_left(votes.get(poll, ()), now)

    start, end = requests[0].timestamp, requests[-1].timestamp
    if not any(c <= start for c in created.values()):
        raise ExplorationReplayError(
            "no poll was posted (items.csv CREATION_TIMESTAMP) by the replay's first "
            "request: every feed would be empty")
    new_polls = sorted(p for p, c in created.items() if start - NEW_POLL_AGE < c <= end)
    unproven_polls = sorted(p for p, c in created.items() if c <= end and
                            interactions_before(p, max(c, start)) < UNPROVEN_INTERACTIONS)
    new_col = {p: j for j, p in enumerate(new_polls)}
    unproven_col = {p: j for j, p in enumerate(unproven_polls)}

    imps = sorted(impressions, key=lambda i: i.timestamp)
    train_imps = [i for i in imps if i.timestamp < cutoff]
    later_imps = [i for i in imps if i.timestamp >= cutoff]
    have_impressions = bool(impressions) or any(e.impression for e in events)
    arms = [(w, with_imps) for with_imps in (False, True) for w in weights]
    if not have_impressions:
        arms = [(w, False) for w in weights]

    say("exploration replay: training User-Personalization once for every arm")
    # Fitting without impressions and then folding them in gives the same model as
    # fitting with them: the fit only counts impressions, after everything it learns.
    base = {False: UserPersonalization(**{"random_state": seed, **(recipe_params or {}),
                                          "exploration_weight": 0.0}).fit(
        TrainingData(_without_impressions(train), items, users, []))}
    if have_impressions:
        base[True] = copy.deepcopy(base[False])
        seen = [i for imp in train_imps for i in imp.item_ids]
        seen += [i for e in train for i in e.impression]
        # One batch: only the per-poll totals matter before the first request.
        base[True].observe([Impression("", tuple(seen), cutoff - 1)])
    streams = {False: _without_impressions(later)}
    if have_impressions:
        streams[True] = sorted([*later, *later_imps], key=lambda e: e.timestamp)

    created_at = np.array([created.get(p, -np.inf) for p in base[False].item_ids_])
    gaps: list[np.ndarray] = []
    per_user: dict[str, dict[str, np.ndarray]] = {}
    exposure: dict[str, _Exposure] = {}
    for w, with_imps in arms:
        name = arm_name(w, with_imps)
        say(f"exploration replay: {name}")
        model = copy.deepcopy(base[with_imps])
        # The weight is read only when serving (the score cache is keyed on it).
        model.exploration_weight = w
        stream = streams[with_imps]
        observed = 0
        out = {m: np.zeros(len(requests)) for m in METRICS}
        new_rows: list[int] = []
        new_cols: list[int] = []
        unproven_rows: list[int] = []
        unproven_cols: list[int] = []
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
            if w == 0.0 and not with_imps:
                gaps.append(_unproven_gaps(model, req.user_id, now, created_at))
            if with_imps:
                # The client reports what it showed; the next request sees fewer bonuses.
                model.observe([Impression(req.user_id, tuple(feed), now)])
            is_new = [now - created.get(p, 0) < NEW_POLL_AGE for p in feed]
            is_unproven = [interactions_before(p, now) < UNPROVEN_INTERACTIONS for p in feed]
            for p, n, u in zip(feed, is_new, is_unproven):
                if n and p in new_col:
                    new_rows.append(j)
                    new_cols.append(new_col[p])
                if u and p in unproven_col:
                    unproven_rows.append(j)
                    unproven_cols.append(unproven_col[p])
            out[NEW_SHARE][j] = sum(is_new) / len(feed)
            out[UNPROVEN_SHARE][j] = sum(is_unproven) / len(feed)
            out[DEAD_SHARE][j] = sum(p not in engaged for p in feed) / len(feed)
            out[NDCG][j] = ndcg_at_k(feed, relevant[req.user_id], 10)
        per_user[name] = out
        shape_new = (len(requests), len(new_polls))
        shape_unproven = (len(requests), len(unproven_polls))
        exposure[name] = _Exposure(
            sp.csr_matrix((np.ones(len(new_rows)), (new_rows, new_cols)), shape=shape_new),
            sp.csr_matrix((np.ones(len(unproven_rows)), (unproven_rows, unproven_cols)),
                          shape=shape_unproven))

    pairs = [(arm_name(w, i), arm_name(0.0, i), METRICS) for w, i in arms if w != 0.0]
    if have_impressions:
        pairs += [(arm_name(w, True), arm_name(w, False), _IMPRESSIONS_METRICS)
                  for w in weights]
    comparisons = [paired_comparison(m, a, b, per_user[a][m], per_user[b][m], seed=seed)
                   for a, b, metrics in pairs for m in metrics]
    arm_comparisons = [_arm_comparison(m, exposure[a], exposure[b], a, b, seed)
                       for a, b, _ in pairs for m in ARM_METRICS]
    summary = {n: {**{m: float(v.mean()) for m, v in ms.items()}, **exposure[n].values()}
               for n, ms in per_user.items()}
    return ExplorationResult(
        cutoff, len(requests), summary, with_holm(comparisons), arm_comparisons,
        {"new_polls": len(new_polls), "unproven_polls": len(unproven_polls)},
        _headroom(gaps, weights),
        {n: {m: v.tolist() for m, v in ms.items()} for n, ms in per_user.items()})


def _unproven_gaps(model: UserPersonalization, user_id: str, now: float,
                   created_at: np.ndarray) -> np.ndarray:
    """How far (in score units) each posted unproven poll sits below the feed's last slot,
    before any exploration bonus (the model at weight 0)."""
    score = served_scores(model, user_id, now, posted_mask(model, created_at, now))
    servable = np.isfinite(score)
    if servable.sum() <= FEED_DEPTH:
        return np.zeros(0)
    last_slot = np.partition(score[servable], -FEED_DEPTH)[-FEED_DEPTH]
    unproven = servable & (model.counts_ < UNPROVEN_INTERACTIONS)
    unproven[len(created_at):] = False  # first named by the replay: not candidates
    # In units of this request's bonus at weight 1 (the model scales it to the spread of
    # the request's scores), so "reachable at weight w" is simply gap < w.
    scale = model._exploration_scale(model.score_all(user_id, now=now))
    return np.maximum(last_slot - score[unproven], 0.0) / scale


def posted_mask(model: UserPersonalization, created_at: np.ndarray, now: float
                ) -> np.ndarray:
    """The polls the replay's feed may hold at ``now`` (``item_ids_`` order):
    ``created_at`` covers the polls the replay started with; polls first named by its
    events since were created by them, before ``now``, and its filter lets them through."""
    posted = np.ones(len(model.item_ids_), bool)
    posted[:len(created_at)] = created_at <= now
    return posted


def served_scores(model: UserPersonalization, user_id: str, now: float,
                  posted: np.ndarray) -> np.ndarray:
    """Each poll's score as the feed serves it (``item_ids_`` order), -inf where the feed
    cannot hold it: not ``posted``, or already touched by the user (the feed leaves those
    out). With a re-ranker, its head's polls hold the scores it deals them: the head's
    own blend scores in the ranker's order, so a poll it lifts into the feed is not
    counted below the feed's last slot. Scores as the model serves them now: the
    replay asks at exploration weight 0, where no poll carries a bonus."""
    score = model.feed_scores(user_id, now=now).astype(np.float64)
    score[~posted] = -np.inf
    index = model.item_index_
    for served in model.recommend(user_id, RERANK_HEAD, now=now,
                                  allow=lambda p: bool(posted[index[p]])):
        score[index[served.item_id]] = served.score
    return score


def _headroom(gaps: list[np.ndarray], weights: Sequence[float]) -> dict[str, Any]:
    """Whether the bonus can reach unproven polls at all: an unseen poll gets at most
    ``weight`` times the request's bonus scale (gaps are in those units), so a poll
    further below the last slot than that cannot enter the feed at that weight."""
    pooled = np.concatenate(gaps) if gaps else np.zeros(0)
    if not len(pooled):
        return {}
    return {"median_gap_below_last_slot": float(np.median(pooled)),
            "max_bonus_at_weight_1": 1.0,  # gaps are in units of the request's bonus scale
            "reachable_share": {f"{w:g}": float((pooled < w).mean())
                                for w in weights}}


def _arm_comparison(metric: str, a: _Exposure, b: _Exposure, treatment: str,
                    baseline: str, seed: int) -> ArmComparison:
    """Paired bootstrap over requests: both arms resampled with the same users."""
    rows = np.arange(a.new.shape[0])
    value_a, value_b = float(a.value(metric)[0]), float(b.value(metric)[0])

    def difference(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        single = sample.ndim == 1
        sample = np.atleast_2d(sample)
        # Row r counts how often resample r drew each request.
        offsets = np.arange(len(sample))[:, None] * len(rows)
        weights = np.bincount((sample + offsets).ravel(), minlength=sample.size
                              ).reshape(len(sample), len(rows)).astype(float)
        diff = a.value(metric, weights) - b.value(metric, weights)
        return diff[0] if single else diff

    result = bootstrap((rows,), difference, vectorized=True, n_resamples=BOOTSTRAP_SAMPLES,
                       confidence_level=CONFIDENCE_LEVEL, method="percentile",
                       random_state=seed)
    # A resample repeats requests (~63 % distinct), which lowers every distinct-count
    # metric; the interval keeps the bootstrap's spread but is centred on the estimate.
    shift = (value_a - value_b) - float(np.mean(result.bootstrap_distribution))
    low = float(result.confidence_interval.low) + shift
    high = float(result.confidence_interval.high) + shift
    finite = np.isfinite(low) and np.isfinite(high)
    return ArmComparison(metric, treatment, baseline, len(rows), value_a, value_b,
                         value_a - value_b, low if finite else None, high if finite else None)
