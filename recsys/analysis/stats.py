"""Paired, user-level statistics shared by the roadmap analyses.

Why its own module: every analysis compares two feeds on the *same users* and must say
how sure it is (docs/evidence-methods.md). The unit is the user: per-user values go into
a paired t-test (decides), a Wilcoxon signed-rank test (shown) and a bootstrap interval over users
(recsys.evaluation.intervals); p-values of a family of comparisons are corrected with
Holm's method; the two-proportion z-test over feed slots is computed only to be shown
beside them, since slots of one user are not independent and it overstates significance.

When a variant was run several times (model seeds, repeated shuffles of a permuted
control), per-user values come in as a runs x users array: tests use each user's mean
over runs, and the interval is a two-level bootstrap (users and, independently per arm,
runs), so run-to-run and shuffle-to-shuffle variation widens it. Each comparison also
carries its *minimum detectable effect* (the difference the run would detect with
``TARGET_POWER``, from the bootstrap standard error) and a three-way verdict.

Holm's step-down correction and the power formula are a few lines each; scipy has
neither (``false_discovery_control`` is Benjamini-Hochberg) and statsmodels is not a
dependency of this project.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from recsys.evaluation.intervals import paired_difference

# The conventional family-wise error rate; every "significant" in a report means this.
ALPHA = 0.05
# Power a study should have to detect the smallest effect worth acting on.
TARGET_POWER = 0.8
# Resamples of the two-level bootstrap: as for the single-level one, enough for
# percentile bounds stable to ~0.1 point at a few milliseconds per comparison.
RUN_BOOTSTRAP_SAMPLES = 1000
RAISES, NO_CHANGE, LOWERS = "raises", "no detectable change", "lowers"


@dataclass(frozen=True)
class PairedComparison:
    """``treatment - baseline`` of one metric over the same users."""

    metric: str
    treatment: str
    baseline: str
    users: int
    mean_treatment: float
    mean_baseline: float
    difference: float
    ci_low: float | None
    ci_high: float | None
    wilcoxon_p: float
    paired_t_p: float
    effect_size_dz: float  # Cohen's d_z: mean difference / sd of the differences
    z_test_p: float | None = None  # two-proportion z-test over slots, shown only beside
    holm_p: float | None = None  # paired-t p after Holm's correction over the family
    # Smallest |difference| this run detects with TARGET_POWER at ALPHA (absolute).
    min_detectable_effect: float | None = None
    runs_treatment: int = 1
    runs_baseline: int = 1

    @property
    def relative_min_detectable_effect(self) -> float | None:
        """The minimum detectable effect as a share of the baseline's mean."""
        if self.min_detectable_effect is None or not self.mean_baseline:
            return None
        return self.min_detectable_effect / abs(self.mean_baseline)

    @property
    def verdict(self) -> str:
        """``raises`` / ``lowers`` when significant, else ``no detectable change`` (read
        beside the minimum detectable effect: it says how large a change could hide)."""
        if not self.significant:
            return NO_CHANGE
        return RAISES if self.difference > 0 else LOWERS

    @property
    def significant(self) -> bool:
        """Holm-corrected paired t below ALPHA and the bootstrap interval excludes 0.

        The paired t decides, Wilcoxon is shown beside it: per-user shares are mostly
        zero with a few large values, and there Wilcoxon tests the median shift, which
        can point opposite to the mean difference the question is about.
        """
        p = self.paired_t_p if self.holm_p is None else self.holm_p
        ci_clear = (self.ci_low is not None and self.ci_high is not None
                    and (self.ci_low > 0 or self.ci_high < 0))
        return p < ALPHA and ci_clear

    def to_json(self) -> dict:
        out = asdict(self)
        out["significant"] = self.significant
        out["verdict"] = self.verdict
        out["relative_min_detectable_effect"] = self.relative_min_detectable_effect
        return {k: _finite(v) for k, v in out.items()}


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def paired_comparison(metric: str, treatment: str, baseline: str, a: np.ndarray,
                      b: np.ndarray, *, seed: int = 0,
                      slots: tuple[int, int, int, int] | None = None) -> PairedComparison:
    """Compare per-user values ``a`` (treatment) and ``b`` (baseline), same user order.

    ``a`` and ``b`` are per-user values, or runs x users arrays when a variant was run
    several times (see the module docstring). ``slots`` = (successes_a, trials_a,
    successes_b, trials_b) adds the slot-level two-proportion z-test.
    """
    a_runs, b_runs = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a_runs.shape[1] != b_runs.shape[1]:
        raise ValueError(f"{treatment} has {a_runs.shape[1]} users, {baseline} "
                         f"{b_runs.shape[1]}: a paired comparison needs the same users")
    a, b = a_runs.mean(0), b_runs.mean(0)
    d = a - b
    z_power = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(TARGET_POWER)
    if len(a_runs) == 1 and len(b_runs) == 1:
        estimate = paired_difference(a, b, seed=seed)
        low, high = estimate.low, estimate.high
        se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
    else:
        low, high, se = _two_level_interval(a_runs, b_runs, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant samples warn; their p is 1 or nan
        if len(d) < 2 or not np.any(d != 0):
            wilcoxon_p, t_p = 1.0, 1.0
        else:
            wilcoxon_p = float(stats.wilcoxon(a, b, zero_method="zsplit").pvalue)
            t_p = float(stats.ttest_rel(a, b).pvalue)
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    dz = float(d.mean() / sd) if sd > 0 else 0.0
    z_p = two_proportion_z_test(*slots) if slots else None
    return PairedComparison(
        metric=metric, treatment=treatment, baseline=baseline, users=len(d),
        mean_treatment=float(a.mean()) if len(a) else float("nan"),
        mean_baseline=float(b.mean()) if len(b) else float("nan"),
        difference=float(d.mean()) if len(d) else float("nan"), ci_low=low, ci_high=high,
        wilcoxon_p=_nan_to_one(wilcoxon_p), paired_t_p=_nan_to_one(t_p),
        effect_size_dz=dz, z_test_p=z_p,
        min_detectable_effect=float(z_power * se) if math.isfinite(se) else None,
        runs_treatment=len(a_runs), runs_baseline=len(b_runs),
    )


def _two_level_interval(a_runs: np.ndarray, b_runs: np.ndarray, seed: int
                        ) -> tuple[float | None, float | None, float]:
    """Percentile 95 % interval and standard error of mean(a) - mean(b), resampling the
    users (the same for both arms: paired) and each arm's runs independently."""
    n = a_runs.shape[1]
    if n < 2:
        return None, None, float("nan")
    rng = np.random.default_rng(seed)
    users = rng.multinomial(n, np.full(n, 1 / n), RUN_BOOTSTRAP_SAMPLES) / n
    diffs = np.zeros(RUN_BOOTSTRAP_SAMPLES)
    for runs, sign in ((a_runs, 1.0), (b_runs, -1.0)):
        r = len(runs)
        picked = rng.multinomial(r, np.full(r, 1 / r), RUN_BOOTSTRAP_SAMPLES) / r
        diffs += sign * np.einsum("br,ru,bu->b", picked, runs, users)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high), float(diffs.std(ddof=1))


def _nan_to_one(p: float) -> float:
    return 1.0 if not math.isfinite(p) else p


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p of a pooled two-proportion z-test (slots treated as independent)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / se
    return float(2 * stats.norm.sf(abs(z)))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def with_holm(comparisons: list[PairedComparison]) -> list[PairedComparison]:
    """The same comparisons with ``holm_p`` filled in over the whole family."""
    from dataclasses import replace

    adjusted = holm([c.paired_t_p for c in comparisons])
    return [replace(c, holm_p=p) for c, p in zip(comparisons, adjusted)]


def users_needed(sd_of_differences: float, effect: float, *, alpha: float = ALPHA,
                 power: float = TARGET_POWER) -> int | None:
    """Users a paired t-test needs to detect a mean difference ``effect`` (two-sided).

    Normal approximation ``((z_{1-a/2} + z_power) * sd / effect)^2`` plus one user, the
    usual small-sample correction; None when the spread is unknown.
    """
    if effect <= 0 or not math.isfinite(sd_of_differences) or sd_of_differences <= 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return int(math.ceil((z * sd_of_differences / effect) ** 2)) + 1
