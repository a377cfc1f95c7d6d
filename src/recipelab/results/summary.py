"""Per-arm summaries over seeds, unpaired: mean, sd, IQM and range, rliable's (unpaired) probability of
improvement over the baseline, and the epochs a validation curve takes to reach a target."""

from __future__ import annotations

import numpy as np
from scipy import stats

from recipelab.results.stats import NAN, sample_sd


def prob_improvement(variant, baseline, higher_is_better: bool = True) -> float:
    """Unpaired: P(X > Y) over all (arm run, baseline run) pairs, ties counting 1/2 (rliable's probability
    of improvement, for one task): the share of cross pairs in which the arm's run beats the baseline's."""
    x, y = np.asarray(list(variant), dtype=float), np.asarray(list(baseline), dtype=float)
    if x.size == 0 or y.size == 0:
        return NAN
    if not higher_is_better:
        x, y = -x, -y
    diff = x[:, None] - y[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


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
        "std": sample_sd(x),
        "iqm": iqm(x),
        "min": float(np.min(x)),
        "max": float(np.max(x)),
    }


def epochs_to_reach(curve: dict[int, float], target: float) -> int | None:
    """The first epoch whose value is >= target; None if none reaches it."""
    return next((epoch for epoch, value in sorted(curve.items()) if value >= target), None)
