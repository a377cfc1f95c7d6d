"""The statistics of a paired ablation report, as pure functions (no I/O, no plotting).

A sweep runs a baseline and other variants on the same seeds; each variant is compared with the baseline
through the paired differences d_i = variant_i - baseline_i over the seeds both completed. Seeds on one side
only are reported as unpaired, never paired with something else. Undefined quantities are NaN, and no
scipy warning escapes (small n makes scipy warn about degenerate data).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

EXACT_MAX_N = 16  # up to 2^16 sign patterns are enumerated; above, the permutation test samples
PERM_SEED = 12345  # the sampled permutation test's own fixed seed (independent of the bootstrap's)
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


def _sd(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.std(x, ddof=1)) if x.size >= 2 else NAN


def _constant(d: np.ndarray) -> bool:
    """All differences equal (up to float rounding: 0.7 - 0.6 and 0.6 - 0.5 differ in the last bit)."""
    return bool(np.ptp(d) <= 1e-12 * max(1.0, float(np.max(np.abs(d)))))


def _mean_diff(x, y, axis=-1):
    return np.mean(x - y, axis=axis)


def _bootstrap(d: np.ndarray, level: float, n_resamples: int, seed: int) -> tuple[float, float, str | None]:
    """BCa interval of the mean; percentile where BCa is degenerate (n < 3, all-equal differences)."""
    if d.size < 2:
        return NAN, NAN, None
    methods = ["BCa", "percentile"] if d.size >= 3 and not _constant(d) else ["percentile"]
    for method in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                (d,), np.mean, n_resamples=n_resamples, confidence_level=level, method=method, rng=seed
            )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return low, high, method.lower()
    return NAN, NAN, None


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
    if _constant(d):
        return {**out, "df": d.size - 1, "note": "zero variance of the differences: t undefined"}
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


def prob_improvement(variant, baseline, higher_is_better: bool = True) -> float:
    """P(X > Y) over all (variant run, baseline run) pairs, ties counting 1/2 (rliable's probability of
    improvement, for one task): the share of cross pairs in which the variant's run beats the baseline's."""
    x, y = np.asarray(list(variant), dtype=float), np.asarray(list(baseline), dtype=float)
    if x.size == 0 or y.size == 0:
        return NAN
    if not higher_is_better:
        x, y = -x, -y
    diff = x[:, None] - y[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def paired_comparison(
    baseline: dict,
    variant: dict,
    *,
    higher_is_better: bool = True,
    level: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict:
    """Compare a variant with the baseline over the seeds both completed (d = variant - baseline).

    ``mean_diff``, the bootstrap interval and the t-test are in the metric's own direction (variant minus
    baseline); only ``prob_improvement`` (and ``verdict``) use ``higher_is_better``. ``p_perm_min`` is
    2/2^n, the smallest two-sided p the sign-flip test can give with n seeds (zero differences raise it).
    ``prob_improvement`` uses every completed run on each side (it needs no pairing).
    """
    base, var = _finite(baseline), _finite(variant)
    paired = _sorted(base.keys() & var.keys())
    unpaired = _sorted((set(baseline) | set(variant)) - set(paired))
    b = np.array([base[s] for s in paired], dtype=float)
    v = np.array([var[s] for s in paired], dtype=float)
    d = v - b
    n = int(d.size)
    ci_low, ci_high, ci_method = _bootstrap(d, level, n_resamples, seed)
    p_perm, exact = _permutation(v, b, n_resamples)
    return {
        "n": n,
        "paired_seeds": paired,
        "unpaired_seeds": unpaired,
        "higher_is_better": higher_is_better,
        "level": level,
        "mean_diff": float(np.mean(d)) if n else NAN,
        "sd_diff": _sd(d),
        "baseline_sd": _sd(list(base.values())),
        "ci_low": ci_low,
        "ci_high": ci_high,
        "ci_method": ci_method,
        "p_perm": p_perm,
        "p_perm_min": min(1.0, 2.0 / 2.0**n) if n else NAN,
        "p_perm_exact": exact,
        "t_test": _t_test(d, level),
        "prob_improvement": prob_improvement(var.values(), base.values(), higher_is_better),
    }


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values: the i-th smallest of m times (m - i), made monotone (a running
    max) and capped at 1. NaN stays NaN and does not count toward m. Written by hand because
    ``scipy.stats.false_discovery_rate`` only does Benjamini-Hochberg/Yekutieli (FDR, not Holm's FWER)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = order.size
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[k]))
        out[k] = running
    return [float(x) for x in out]


def decisive_test(comparison: dict, alpha: float = 0.05, family: int = 1) -> tuple[str, float]:
    """Which test decides and its unadjusted p: the permutation test when n lets it reach ``alpha`` after
    Holm over ``family`` comparisons (``p_perm_min * family <= alpha``; 6 seeds and 2 variants cannot:
    2/64 * 2 > 0.05), else the paired t-test. Feed these p's to ``holm`` across variants."""
    if comparison["p_perm_min"] * family <= alpha:  # False for NaN (n = 0)
        return "permutation", comparison["p_perm"]
    return "t-test", comparison["t_test"]["p"]


def min_detectable_diff(comparison: dict, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference these seeds could detect (normal approximation, paired design):

        MDD = (z_{1-alpha/2} + z_{power}) * sigma_d / sqrt(n)      (about 2.80 * sigma_d / sqrt(n))

    sigma_d is the sd of the paired differences when n >= 2, else the baseline's sd across seeds times
    sqrt(2) (the sd of a difference of two independent runs); n is the number of paired seeds (at least 1).
    """
    n = comparison["n"]
    sigma = comparison["sd_diff"] if n >= 2 else comparison["baseline_sd"] * math.sqrt(2)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * sigma / math.sqrt(max(n, 1)))


def verdict(comparison: dict, adjusted_p: float, alpha=0.05, higher_is_better=True, family=1) -> dict:
    """The label: "better"/"worse" when the (Holm-)adjusted p of the deciding test is <= alpha AND the
    bootstrap interval excludes 0; otherwise "no difference detected". ``adjusted_p`` comes from ``holm``
    over the ``decisive_test`` p's of all ``family`` variants."""
    test_used, p = decisive_test(comparison, alpha, family)
    low, high = comparison["ci_low"], comparison["ci_high"]
    excludes = bool(low > 0 or high < 0)  # False for NaN
    rejects = bool(adjusted_p <= alpha)
    label = "no difference detected"
    if rejects and excludes:
        gain = comparison["mean_diff"] > 0
        label = "better" if gain == higher_is_better else "worse"
    return {
        "verdict": label,
        "test_used": test_used,
        "p": p,
        "adjusted_p": float(adjusted_p),
        "alpha": alpha,
        "ci_excludes_zero": excludes,
        "min_detectable_diff": min_detectable_diff(comparison, alpha),
    }


def iqm(values) -> float:
    """Interquartile mean (the mean of the middle 50%); NaN below 4 values."""
    x = np.asarray(list(values), dtype=float)
    return float(stats.trim_mean(x, 0.25)) if x.size >= 4 else NAN


def summary(values) -> dict:
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return {"n": 0, "mean": NAN, "std": NAN, "iqm": NAN, "min": NAN, "max": NAN}
    return {
        "n": int(x.size),
        "mean": float(np.mean(x)),
        "std": _sd(x),
        "iqm": iqm(x),
        "min": float(np.min(x)),
        "max": float(np.max(x)),
    }


def epochs_to_reach(curve: dict[int, float], target: float) -> int | None:
    """The first epoch whose value is >= target; None if none reaches it."""
    return next((epoch for epoch, value in sorted(curve.items()) if value >= target), None)
