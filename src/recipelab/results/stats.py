"""The statistics of one arm's paired comparison with the baseline, as pure functions (no I/O, no plots).

A sweep runs a baseline and other arms (variants) on the same seeds; each arm is compared with the baseline
through the paired differences d_i = arm_i - baseline_i over the seeds both completed. Seeds on one side
only are reported as unpaired, never paired with something else. Undefined quantities are NaN, and no
scipy warning escapes (small n makes scipy warn about degenerate data).

Two rules live here, each written once with the words the report quotes: which test decides
(``permutation_decides``, ``deciding_test_rule``) and which interval is reported (``BCA_MIN_N``,
``interval_rule``).
The family, Holm and the verdicts are in ``verdict``, power and the seed planner in ``power``.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
from scipy import stats

EXACT_MAX_N = 16  # up to 2^16 sign patterns are enumerated; above, the permutation test samples
PERM_SEED = 12345  # the sampled permutation test's own fixed seed (independent of the bootstrap's)
# Below this many paired seeds BCa's 95% interval of the mean covers too little: in a seeded simulation of
# normal differences (20,000 samples each) about 72% at 3 seeds, 89% at 8, 92% at 16, 93% at 24-32 and 94%
# from 40 on (tests/results/test_intervals.py keeps a smaller one). Below it the paired t-interval, exact
# for normal differences, is reported instead.
BCA_MIN_N = 40
T_ASSUMPTION = "differences approximately normal"
NAN = float("nan")


def _sorted(seeds) -> list:
    try:
        return sorted(seeds)
    except TypeError:  # seeds of mixed types
        return sorted(seeds, key=repr)


def _finite(values: dict) -> dict:
    """A seed whose value is NaN or infinite (a diverged run) counts as not completed."""
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def sample_sd(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.std(x, ddof=1)) if x.size >= 2 else NAN


def _constant(d: np.ndarray) -> bool:
    """All differences equal (up to float rounding: 0.7 - 0.6 and 0.6 - 0.5 differ in the last bit)."""
    return bool(np.ptp(d) <= 1e-12 * max(1.0, float(np.max(np.abs(d)))))


def _mean_diff(x, y, axis=-1):
    return np.mean(x - y, axis=axis)


def permutation_decides(n: int, family: int, alpha: float) -> bool:
    """THE rule for the deciding test: the exact sign-flip permutation test decides where its smallest
    attainable two-sided p, 2/2^n (the two all-same-sign patterns of n paired seeds), times the Holm
    family's size m is <= alpha, i.e. where it can pass Holm's first step alpha/m; else the paired t-test.
    With n <= 1 it never decides (2/2^n >= 1)."""
    return 2.0 / 2.0**n * family <= alpha


def permutation_seeds(family: int, alpha: float) -> int:
    """The fewest paired seeds with which the permutation test decides in a family of ``family`` arms."""
    n = 0
    while not permutation_decides(n, family, alpha):
        n += 1
    return n


def deciding_test_rule(alpha: float, largest_family: int = 6) -> str:
    """``permutation_decides`` in words, with the seed counts it implies for families of 1 ..
    ``largest_family`` arms (at alpha 0.05: 6 seeds for 1 arm, 7 for 2-3, 8 for 4-6)."""
    seeds: dict[int, list[int]] = {}
    for m in range(1, max(largest_family, 1) + 1):
        seeds.setdefault(permutation_seeds(m, alpha), []).append(m)
    counts = ", ".join(
        f"{n} for {ms[0]}{f'–{ms[-1]}' if len(ms) > 1 else ''} arm{'s' if ms[-1] > 1 else ''}"
        for n, ms in seeds.items()
    )
    return (
        "the exact sign-flip permutation test where its smallest attainable two-sided p, 2/2^n with n paired "
        f"seeds, times the family size m is ≤ α (at α = {alpha}, n ≥ {counts}); else the paired t-test "
        f"({T_ASSUMPTION})"
    )


def decisive_test(comparison: dict, alpha: float, family: int) -> tuple[str, float]:
    """Which test decides (``permutation_decides``) and its unadjusted p; ``verdict.verdicts`` passes the
    family's size and feeds these p's to Holm."""
    if permutation_decides(comparison["n"], family, alpha):
        return "permutation", comparison["p_perm"]
    return "t-test", comparison["t_test"]["p"]


def interval_rule(n_resamples: int, seed: int) -> str:
    return (
        f"the paired t-interval below {BCA_MIN_N} paired seeds (BCa covers too little there: a seeded "
        f"simulation of normal differences), BCa bootstrap ({n_resamples} resamples, seed {seed}) from "
        f"{BCA_MIN_N}; equal differences give the single value"
    )


def _bca(d: np.ndarray, level: float, n_resamples: int, seed: int) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=level, rng=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _interval(d: np.ndarray, t_test: dict, level: float, n_resamples: int, seed: int) -> tuple:
    """(low, high, method) of the mean difference: BCa from BCA_MIN_N paired seeds, else (or where BCa
    is degenerate) the t-interval; None below 2 seeds."""
    if d.size < 2:
        return NAN, NAN, None
    if d.size >= BCA_MIN_N and not _constant(d):
        low, high = _bca(d, level, n_resamples, seed)
        if math.isfinite(low) and math.isfinite(high):
            return low, high, "bca"
    return t_test["ci_low"], t_test["ci_high"], "t"


def _permutation(v: np.ndarray, b: np.ndarray, n_resamples: int) -> tuple[float, bool]:
    """Two-sided sign-flip p-value of the mean difference: exact (all 2^n patterns) for n <= 16."""
    n = v.size
    if n == 0:
        return NAN, True
    if n == 1:  # both sign patterns are as extreme as the observed one; scipy wants 2 observations
        return 1.0, True
    exact = n <= EXACT_MAX_N
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.permutation_test(
            (v, b),
            _mean_diff,
            permutation_type="samples",  # swaps within pairs = flips the sign of each difference
            vectorized=True,
            n_resamples=np.inf if exact else n_resamples,
            alternative="two-sided",
            rng=PERM_SEED,
        )
    return float(res.pvalue), exact


def _t_test(d: np.ndarray, level: float) -> dict:
    out = {"p": NAN, "t": NAN, "df": NAN, "ci_low": NAN, "ci_high": NAN, "assumption": T_ASSUMPTION}
    if d.size < 2:
        return {**out, "note": "needs 2 paired seeds"}
    if _constant(d):  # the interval shrinks to the one value; t is undefined (0 / 0 or x / 0)
        mean = float(np.mean(d))
        note = "zero variance of the differences: t undefined"
        return {**out, "df": d.size - 1, "ci_low": mean, "ci_high": mean, "note": note}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.ttest_1samp(d, 0.0)
        ci = res.confidence_interval(confidence_level=level)
    return {
        **out,
        "p": float(res.pvalue),
        "t": float(res.statistic),
        "df": int(res.df),
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
    }


@functools.lru_cache(maxsize=4096)  # (k, n, level) repeat across arms, metrics and simulations
def _clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def paired_improvement(d: np.ndarray, higher_is_better: bool, level: float) -> dict:
    """Paired: the share of paired seeds on which the arm improved on the baseline (a tie is not an
    improvement), with its exact (Clopper-Pearson) interval."""
    n = int(d.size)
    if n == 0:
        return {"improved": 0, "n": 0, "share": NAN, "ci_low": NAN, "ci_high": NAN}
    k = int(np.sum(d > 0 if higher_is_better else d < 0))
    low, high = _clopper_pearson(k, n, level)
    return {"improved": k, "n": n, "share": k / n, "ci_low": low, "ci_high": high}


def paired_comparison(
    baseline: dict,
    variant: dict,
    *,
    higher_is_better: bool = True,
    level: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict:
    """Compare an arm with the baseline over the seeds both completed (d = arm - baseline).

    ``mean_diff``, the interval (``ci_method``: ``t`` or ``bca``, see ``BCA_MIN_N``) and both tests are in
    the metric's own direction; only ``paired_improvement`` uses ``higher_is_better``. ``p_perm_min`` is
    2/2^n, the smallest two-sided p the sign-flip test can give with n seeds (zero differences raise it).
    """
    base, var = _finite(baseline), _finite(variant)
    paired = _sorted(base.keys() & var.keys())
    unpaired = _sorted((set(baseline) | set(variant)) - set(paired))
    b = np.array([base[s] for s in paired], dtype=float)
    v = np.array([var[s] for s in paired], dtype=float)
    d = v - b
    n = int(d.size)
    t_test = _t_test(d, level)
    ci_low, ci_high, ci_method = _interval(d, t_test, level, n_resamples, seed)
    p_perm, exact = _permutation(v, b, n_resamples)
    return {
        "n": n,
        "paired_seeds": paired,
        "unpaired_seeds": unpaired,
        "higher_is_better": higher_is_better,
        "level": level,
        "mean_diff": float(np.mean(d)) if n else NAN,
        "sd_diff": sample_sd(d),
        "ci_low": ci_low,
        "ci_high": ci_high,
        "ci_method": ci_method,
        "p_perm": p_perm,
        "p_perm_min": min(1.0, 2.0 / 2.0**n) if n else NAN,
        "p_perm_exact": exact,
        "t_test": t_test,
        "paired_improvement": paired_improvement(d, higher_is_better, level),
    }
