"""The verdicts of a report: each arm's, from its paired comparison with the baseline (``verdicts``, over
one Holm family), and a claim's, from the verdicts of the arms it names (``claim_verdict``). Each rule is
written once here, with the words the report quotes.

The Holm family (``HOLM_FAMILY``): every arm compared with the baseline on one metric, m of them. An arm
without a p (fewer than 2 paired seeds, or a t-test undefined because every difference is equal) counts in
m and never rejects. The same m sets the deciding test (``stats.permutation_decides``), Holm's correction
(``holm``) and the level of the power (alpha / m, ``power``).
"""

from __future__ import annotations

import math

import numpy as np

from recipelab.results import power as pw
from recipelab.results.stats import decisive_test

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no difference detected"
CONFIRMED, NOT_CONFIRMED = "confirmed", "not confirmed"
UNDECIDED = "no difference detected at this budget and power"
HOLM_FAMILY = (
    "Holm over a family of m = every arm compared with the baseline on the metric; an arm without a p "
    "(fewer than 2 paired seeds, or equal differences under the t-test) counts in m and never rejects"
)
VERDICT_RULE = (
    "better/worse when the Holm-adjusted p of the deciding test is ≤ α and the reported interval excludes "
    "0; otherwise no difference detected"
)
CLAIM_RULE = (
    "a claim predicts, for each arm it names and each of its metrics, better or worse than the baseline. "
    "Confirmed: every prediction holds (that arm's verdict is the predicted one); not confirmed: any named "
    "arm's verdict is the opposite one, whatever the others show; otherwise (a named arm with no difference "
    "detected, or not compared) no difference detected at this budget and power"
)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values over a family of m = len(p_values) arms: the i-th smallest
    (i from 0) times (m - i), made monotone (a running max) and capped at 1. A NaN p counts in m, as the
    largest, and stays NaN: that arm never rejects. Written by hand because ``scipy.stats`` has only
    Benjamini-Hochberg/Yekutieli (``false_discovery_rate``: FDR, not Holm's family-wise error)."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    out = np.full(m, np.nan)
    running = 0.0
    for i, k in enumerate(np.argsort(np.where(np.isfinite(p), p, np.inf), kind="stable")):
        if not math.isfinite(p[k]):
            break
        running = max(running, min(1.0, (m - i) * p[k]))
        out[k] = running
    return [float(x) for x in out]


def verdict(comparison: dict, test: str, p: float, adjusted_p: float, alpha: float, family: int) -> dict:
    """One arm's label by ``VERDICT_RULE`` (both conditions: the corrected test and the interval), with
    what its seeds could detect at the family's level (``power``)."""
    c = comparison
    excludes = bool(c["ci_low"] > 0 or c["ci_high"] < 0)  # False for NaN
    label = NO_DIFFERENCE
    if adjusted_p <= alpha and excludes:  # False for NaN
        label = BETTER if (c["mean_diff"] > 0) == c["higher_is_better"] else WORSE
    level = alpha / family
    return {
        "verdict": label,
        "test_used": test,
        "p": p,
        "adjusted_p": float(adjusted_p),
        "alpha": alpha,
        "family": family,
        "ci_excludes_zero": excludes,
        "power": pw.POWER,
        "power_level": level,
        "min_detectable_diff": pw.min_detectable_diff(c["n"], c["sd_diff"], level),
        "seeds_for_observed": pw.seeds_needed(c["mean_diff"], c["sd_diff"], level)
        if label == NO_DIFFERENCE and c["n"] >= 2
        else None,
    }


def verdicts(comparisons: list[dict], alpha: float) -> list[dict]:
    """The verdict of every arm of one Holm family (``HOLM_FAMILY``: all arms compared with the baseline
    on one metric), in the order given."""
    m = len(comparisons)
    tests = [decisive_test(c, alpha, m) for c in comparisons]
    adjusted = holm([p for _, p in tests])
    return [
        verdict(c, test, p, adj, alpha, m)
        for c, (test, p), adj in zip(comparisons, tests, adjusted, strict=True)
    ]


def claim_verdict(predictions: list[tuple[str, str, str]], labels: dict[tuple[str, str], str]) -> dict:
    """A claim's words by ``CLAIM_RULE``. ``predictions``: (arm, metric, ``better``/``worse``) for every arm
    the claim names and every metric it is judged on; ``labels``: (arm, metric) → that arm's verdict (an
    arm the report did not compare is missing). Also lists which predictions held, went against the claim,
    or stayed open."""
    held, against, open_ = [], [], []
    for arm, metric, predicted in predictions:
        got = labels.get((arm, metric))
        name = f"{arm} on {metric}"
        if got == predicted:
            held.append(name)
        elif got in (BETTER, WORSE):
            against.append(f"{name}: {got}")
        else:
            open_.append(f"{name}: {got or 'not compared'}")
    words = NOT_CONFIRMED if against else CONFIRMED if held and not open_ else UNDECIDED
    return {"words": words, "as_predicted": held, "against": against, "undecided": open_}
