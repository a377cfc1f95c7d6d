"""Power of a paired comparison, from the non-central t: the smallest difference a sweep's seeds could
detect, and the seed planner (how many seeds detect a given difference).

Both are for the two-sided paired t-test at the level the verdict actually uses: Holm's first step over a
family of m arms, alpha / m (``verdict.HOLM_FAMILY`` says which arms count). With n pairs whose differences
are normal with mean delta and sd sigma, t = mean / (s / sqrt(n)) follows the non-central t with n - 1
degrees of freedom and non-centrality delta * sqrt(n) / sigma (``scipy.stats.nct``). Where the exact
permutation test decides (``stats.permutation_decides``), the t-test's power stands in for its power,
which is close to it but moves in steps (its p takes the values k / 2^n).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import optimize, stats

POWER = 0.8  # the power of the minimum detectable difference and of the seed planner
MAX_SEEDS = 1000  # the planner looks no further
NAN = float("nan")


def power(n, effect: float, sd: float, level: float):
    """P(the two-sided paired t-test at ``level`` rejects) with ``n`` pairs (an int or an array of them)
    whose differences have mean ``effect`` and sd ``sd``: both tails of the non-central t beyond the
    critical value. The lower tail is ``nct.sf`` at the negated non-centrality (``nct.cdf`` far in its
    tail returns NaN)."""
    n = np.asarray(n, dtype=float)
    df = n - 1
    crit = stats.t.ppf(1 - level / 2, df)
    nc = effect * np.sqrt(n) / sd
    return stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc)


@functools.lru_cache(maxsize=1024)  # the same (n, level) for every arm and metric of a report
def _detectable_effect_size(n: int, level: float, target: float) -> float:
    """The standardized difference delta / sigma that n pairs detect with probability ``target``."""
    high = 1.0
    while power(n, high, 1.0, level) < target:
        high *= 2
    return float(optimize.brentq(lambda e: power(n, e, 1.0, level) - target, 0.0, high, xtol=1e-10))


def min_detectable_diff(n: int, sd: float, level: float, target: float = POWER) -> float:
    """The smallest true mean difference that ``n`` paired seeds with spread ``sd`` of their differences
    detect with probability ``target`` at ``level``; NaN (undefined) below 2 pairs, or where the
    differences do not spread (sd 0 or NaN: the t-test is undefined)."""
    if n < 2 or not sd > 0:
        return NAN
    return _detectable_effect_size(int(n), float(level), float(target)) * sd


def seeds_needed(effect: float, sd: float, level: float, target: float = POWER) -> int | None:
    """The fewest paired seeds whose t-test at ``level`` detects a true difference ``effect`` with
    probability ``target``, when the differences spread with ``sd`` (a pilot sweep's); None where
    undefined (no spread, no effect) or beyond ``MAX_SEEDS``. The search starts at the normal
    approximation's n, ((z_{1-level/2} + z_target) * sd / effect)^2, which the t-test never beats."""
    if not sd > 0 or not effect or not math.isfinite(effect):
        return None
    z = stats.norm.ppf(1 - level / 2) + stats.norm.ppf(target)
    n = max(2, math.ceil((z * sd / abs(effect)) ** 2))
    while n <= MAX_SEEDS:
        if power(n, abs(effect), sd, level) >= target:
            return n
        n += 1
    return None


def power_rule(alpha: float) -> str:
    return (
        f"power {POWER} of the paired t-test at Holm's first-step level α/m (non-central t), α = {alpha}: "
        "the smallest difference the seeds could detect, undefined below 2 paired seeds; in a "
        "no-difference row, the seeds that would detect the observed difference"
    )
