"""Trend-frequency tuning: which of Trending-Now's four discovery frequencies suits the data
(roadmap stage 5, issue 7).

Why a backtest: the right frequency depends on how long trends last in this app, which
only the data knows. For each frequency the interactions are replayed in time order
through a fresh :class:`TrendingNow` (``observe``, as a live server gets them), and at
every interval boundary after a warm-up the trending list is compared with what happened
next: the polls that drew the most interactions during the interval the list is served
for (until the next discovery). Precision@10 counts the list's polls among that
interval's top 10; NDCG@10 grades each poll by its interaction count there. Boundaries
where the list had to fall back to popular polls (nothing in the last two intervals) are
counted as intervals with no data, and score as served.

The recommendation: among frequencies whose share of boundaries with no data stays at or
below ``MAX_EMPTY_SHARE`` (above it the slot mostly serves the popular fallback, not
trends), the best mean NDCG@10, precision@10 breaking ties. A paired-by-day comparison
stands behind it: each frequency's scores are averaged per day (a day holds whole
intervals of every frequency), so the frequencies are compared on the same days.

What "matches the burst timescale" means (the ground truth the tests check on demo data
with planted bursts): Trending-Now lists a burst at the first interval boundary after it
starts (on average half an interval late) and serves that list for one interval, so a
burst of duration T is served well only by intervals w with w/2 + w <= T, and among
those the longest sees the clearest rise above noise: :func:`latency_matched_frequency`.
Daily trends lose on data where new polls fade within hours (the demo's recency wave),
because a day-long interval then ranks yesterday's new polls, which are already quiet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.analysis.stats import PairedComparison, paired_comparison, with_holm
from recsys.errors import HunchError
from recsys.events import Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.trending_now import TREND_DISCOVERY_FREQUENCIES, TrendingNow

TOP_K = 10  # the trending slot shows one poll per block; 10 covers two pages of feed
# The first days only fill the counters (a 1-day frequency needs two complete days).
WARMUP_SECONDS = 2 * 86_400
DAY = 86_400
METRICS = ("ndcg_at_10", "precision_at_10")
# Above this share of boundaries with nothing in the last two intervals, a frequency
# mostly serves the popular fallback; one boundary in five is already a visibly stale
# trending slot, so such a frequency is not recommended whatever its scores.
MAX_EMPTY_SHARE = 0.2
# A burst is listed on average half an interval after it starts and then served for one
# interval: detection latency + service = 1.5 intervals must fit inside the burst.
DETECTION_LATENCY_INTERVALS = 1.5


class TrendTuningError(HunchError):
    """The data cannot support the backtest (too short a window, too few events)."""


@dataclass
class FrequencyScore:
    frequency: str
    cutoffs: int
    ndcg_at_10: float
    precision_at_10: float
    empty_share: float  # share of boundaries with no data in the last two intervals
    per_day: dict[str, list[float]] = field(repr=False, default_factory=dict)


@dataclass
class TrendTuningResult:
    scores: list[FrequencyScore]
    recommended: str
    comparisons: list[PairedComparison]
    days: int
    eligible: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "recommended": self.recommended, "days": self.days,
            "rule": (f"best NDCG@10 (precision@10 breaks ties) among frequencies with at most "
                     f"{MAX_EMPTY_SHARE:.0%} of boundaries without data"),
            "eligible": list(self.eligible),
            "table": [{"frequency": s.frequency, "cutoffs": s.cutoffs,
                       "ndcg_at_10": s.ndcg_at_10, "precision_at_10": s.precision_at_10,
                       "empty_interval_share": s.empty_share} for s in self.scores],
            "comparisons": [c.to_json() for c in self.comparisons],
        }


def latency_matched_frequency(burst_seconds: float) -> str:
    """The longest frequency that still serves a burst lasting ``burst_seconds`` while it
    runs (``DETECTION_LATENCY_INTERVALS`` intervals fit in it); the shortest if none does."""
    ordered = sorted(TREND_DISCOVERY_FREQUENCIES.items(), key=lambda kv: kv[1])
    fitting = [name for name, width in ordered
               if width * DETECTION_LATENCY_INTERVALS <= burst_seconds]
    return fitting[-1] if fitting else ordered[0][0]


def _graded_ndcg(ranked: Sequence[int], counts: np.ndarray, k: int) -> float:
    ideal = np.sort(counts[counts > 0])[::-1][:k]
    if len(ideal) == 0:
        return 0.0
    discounts = 1.0 / np.log(np.arange(2, k + 2))
    dcg = sum(counts[i] * discounts[r] for r, i in enumerate(ranked[:k]))
    return float(dcg / (ideal * discounts[:len(ideal)]).sum())


def backtest_frequency(events: Sequence[Interaction], frequency: str, *, top_k: int = TOP_K,
                       warmup: int = WARMUP_SECONDS, horizon: int | None = None,
                       step: int | None = None) -> FrequencyScore:
    """Replay ``events`` (time-ordered) and score the list at every interval boundary."""
    model = TrendingNow(frequency).fit(TrainingData([]))
    width = model.interval_seconds
    poll_index: dict[str, int] = {}
    ts = np.fromiter((e.timestamp for e in events), np.int64, len(events))
    polls = np.fromiter((poll_index.setdefault(e.item_id, len(poll_index)) for e in events),
                        np.int64, len(events))
    start, end = int(ts.min()), int(ts.max())
    horizon = horizon or width
    step = step or width
    first = (start + warmup) // DAY * DAY + DAY
    boundaries = list(range(first, end - horizon + 1, step))
    if not boundaries:
        raise TrendTuningError(
            f"the data spans {(end - start) / DAY:.1f} days; a {frequency} backtest needs at "
            f"least {(warmup + 2 * width) / DAY:.1f} days")
    ndcg, precision, empty, day_of = [], [], 0, []
    position = 0
    for b in boundaries:
        stop = int(np.searchsorted(ts, b, side="left"))
        if stop > position:
            model.observe(events[position:stop])
            position = stop
        ranked = model.rank(top_k, now=b)
        if ranked.reason != "trending":
            empty += 1
        lo, hi = stop, int(np.searchsorted(ts, b + horizon, side="left"))
        counts = np.bincount(polls[lo:hi], minlength=len(poll_index)).astype(float)
        idx = [poll_index[s.item_id] for s in ranked.items if s.item_id in poll_index]
        top = set(np.argsort(-counts, kind="stable")[:top_k][counts[np.argsort(
            -counts, kind="stable")[:top_k]] > 0].tolist())
        precision.append(sum(1 for i in idx if i in top) / top_k)
        ndcg.append(_graded_ndcg(idx, counts, top_k))
        day_of.append((b - start) // DAY)
    per_day: dict[str, list[float]] = {}
    days = np.array(day_of)
    for name, values in (("ndcg_at_10", ndcg), ("precision_at_10", precision)):
        v = np.array(values)
        per_day[name] = [float(v[days == d].mean()) for d in sorted(set(day_of))]
    per_day["day"] = [float(d) for d in sorted(set(day_of))]
    return FrequencyScore(frequency, len(boundaries), float(np.mean(ndcg)),
                          float(np.mean(precision)), empty / len(boundaries), per_day)


def tune_trending(events: Sequence[Interaction], *,
                  frequencies: Sequence[str] = tuple(TREND_DISCOVERY_FREQUENCIES),
                  top_k: int = TOP_K, warmup: int = WARMUP_SECONDS,
                  horizon: int | None = None, step: int | None = None,
                  progress: Callable[[str], None] | None = None) -> TrendTuningResult:
    """Backtest every frequency and recommend one (see the module docstring's rule)."""
    say = progress or (lambda _m: None)
    events = sorted(events, key=lambda e: e.timestamp)
    if len(events) < 100:
        raise TrendTuningError(f"only {len(events)} interactions; the backtest needs at "
                               "least 100 spread over several days")
    scores = []
    for f in frequencies:
        say(f"backtesting trend discovery every {f}")
        scores.append(backtest_frequency(events, f, top_k=top_k, warmup=warmup, horizon=horizon, step=step))
    eligible = [s for s in scores if s.empty_share <= MAX_EMPTY_SHARE]
    if not eligible:
        raise TrendTuningError(
            f"every frequency had more than {MAX_EMPTY_SHARE:.0%} of intervals without "
            "interactions; the data is too sparse to tune trending (collect more events)")
    best = max(eligible, key=lambda s: (s.ndcg_at_10, s.precision_at_10))
    comparisons = []
    for s in scores:
        if s is best:
            continue
        common = sorted(set(best.per_day["day"]) & set(s.per_day["day"]))
        a = [best.per_day["ndcg_at_10"][best.per_day["day"].index(d)] for d in common]
        b = [s.per_day["ndcg_at_10"][s.per_day["day"].index(d)] for d in common]
        comparisons.append(paired_comparison("ndcg_at_10 (per day)", best.frequency,
                                             s.frequency, np.array(a), np.array(b)))
    days = math.ceil((events[-1].timestamp - events[0].timestamp) / DAY)
    return TrendTuningResult(scores, best.frequency, with_holm(comparisons), days,
                             [s.frequency for s in eligible])


def summary_rows(result: TrendTuningResult) -> list[dict[str, Any]]:
    return result.to_json()["table"]
