"""The per-arm statistics of a paired comparison, each checked against a value computed here,
independently (brute-force enumeration, formulas, scipy's distributions)."""

import math
import warnings
from itertools import product

import numpy as np
import pytest
from scipy import stats as sps

from recipelab.results.stats import paired_comparison
from recipelab.results.summary import epochs_to_reach, iqm, prob_improvement, summary
from recipelab.results.verdict import verdicts

FAST = 200  # resamples where the test is not about resampling


def pair(diffs, base=None):
    """Baseline and variant dicts over seeds 0..n-1 whose differences are ``diffs``."""
    base = np.linspace(0.80, 0.90, len(diffs)) if base is None else base
    baseline = {i: float(b) for i, b in enumerate(base)}
    return baseline, {i: baseline[i] + float(d) for i, d in enumerate(diffs)}


def brute_force_p(diffs) -> float:
    """Two-sided sign-flip p: the share of all 2^n sign patterns whose |mean| is at least the observed."""
    d = np.asarray(diffs, dtype=float)
    observed = abs(d.mean())
    hits = sum(
        abs(np.mean(np.array(signs) * d)) >= observed - 1e-12 for signs in product((1, -1), repeat=d.size)
    )
    return hits / 2**d.size


@pytest.mark.parametrize(
    "diffs",
    [
        [0.5, -0.2, 0.9],
        [1.2, 0.3, -0.4, 0.8, 0.5],
        [0.02, 0.01, -0.005, 0.03, 0.015, -0.01, 0.025, 0.004],
        [0.1, -0.1, 0.2, -0.2, 0.05, 0.0, 0.3, -0.35],
    ],
)
def test_exact_permutation_p_matches_brute_force(diffs):
    b, v = pair(diffs)
    c = paired_comparison(b, v, n_resamples=FAST)
    assert c["p_perm_exact"] is True
    assert c["p_perm"] == pytest.approx(brute_force_p(diffs), abs=1e-12)
    assert c["p_perm_min"] == pytest.approx(2 / 2 ** len(diffs))


def test_three_identical_gains_give_a_quarter():
    b, v = pair([0.01, 0.01, 0.01])
    c = paired_comparison(b, v, n_resamples=FAST)
    assert c["p_perm"] == pytest.approx(0.25)
    assert c["p_perm_min"] == pytest.approx(0.25)  # 3 seeds can never reach 0.05
    assert c["ci_method"] == "t"  # below 40 seeds; all-equal differences: the one value
    assert (c["ci_low"], c["ci_high"]) == (pytest.approx(0.01), pytest.approx(0.01))


def test_sampled_permutation_above_16_is_reproducible():
    diffs = np.random.default_rng(3).normal(0.5, 1.0, 18)
    b, v = pair(diffs)
    c1 = paired_comparison(b, v, n_resamples=FAST)
    c2 = paired_comparison(b, v, n_resamples=FAST, seed=99)  # the permutation test has its own seed
    assert c1["p_perm_exact"] is False
    assert c1["p_perm"] == c2["p_perm"]
    assert 0 < c1["p_perm"] <= 1


def all_sign_flips_p(d: np.ndarray) -> float:
    """The exact two-sided sign-flip p over all 2^n patterns, as bit patterns (2^18 rows at n = 18)."""
    bits = (np.arange(2**d.size)[:, None] >> np.arange(d.size)) & 1
    sums = (1 - 2 * bits) @ d
    return float(np.mean(np.abs(sums) >= abs(d.sum()) - 1e-9))


@pytest.mark.parametrize("shift", [0.25, 0.45])
def test_sampled_permutation_at_18_matches_the_exact_enumeration(shift):
    b, v = pair(np.random.default_rng(4).normal(shift, 1.0, 18), base=np.zeros(18))
    exact = all_sign_flips_p(np.array([v[i] - b[i] for i in range(18)]))
    resamples = 10_000
    c = paired_comparison(b, v, n_resamples=resamples)
    assert c["p_perm_exact"] is False and 0.02 < exact < 0.5  # a p that sampling could miss
    assert abs(c["p_perm"] - exact) <= 4 * math.sqrt(exact * (1 - exact) / resamples)  # 4 Monte Carlo SEs


def test_bootstrap_interval_on_a_large_sample_matches_normal_theory():
    d = np.random.default_rng(0).normal(0.3, 1.0, 400)
    b, v = pair(d, base=np.zeros(400))
    c = paired_comparison(b, v, n_resamples=2000, seed=7)
    half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)
    assert c["ci_method"] == "bca"
    assert c["ci_high"] - c["ci_low"] == pytest.approx(2 * half, rel=0.10)
    assert c["ci_low"] == pytest.approx(d.mean() - half, abs=0.10 * half)
    assert c["ci_high"] == pytest.approx(d.mean() + half, abs=0.10 * half)
    again = paired_comparison(b, v, n_resamples=2000, seed=7)
    assert (again["ci_low"], again["ci_high"]) == (c["ci_low"], c["ci_high"])
    other = paired_comparison(b, v, n_resamples=2000, seed=8)
    assert (other["ci_low"], other["ci_high"]) != (c["ci_low"], c["ci_high"])


def test_t_test_matches_the_formula():
    d = np.array([0.3, 0.1, 0.5, 0.2, 0.4, -0.05])
    b, v = pair(d)
    d = np.array([v[i] - b[i] for i in range(d.size)])  # the differences as floats produce them
    tt = paired_comparison(b, v, n_resamples=FAST, level=0.9)["t_test"]
    n, mean, se = d.size, d.mean(), d.std(ddof=1) / math.sqrt(d.size)
    t = mean / se
    assert tt["t"] == pytest.approx(t)
    assert tt["df"] == n - 1
    assert tt["p"] == pytest.approx(2 * sps.t.sf(abs(t), n - 1))
    q = sps.t.ppf(0.95, n - 1)  # a 90% interval
    assert tt["ci_low"] == pytest.approx(mean - q * se)
    assert tt["ci_high"] == pytest.approx(mean + q * se)
    assert tt["assumption"] == "differences approximately normal"


def double_loop(xs, ys, higher_is_better=True):
    total = 0.0
    for x in xs:
        for y in ys:
            if x == y:
                total += 0.5
            elif (x > y) == higher_is_better:
                total += 1.0
    return total / (len(xs) * len(ys))


@pytest.mark.parametrize(
    "xs, ys",
    [
        ([0.9, 0.8, 0.85], [0.8, 0.8, 0.7]),  # ties count 1/2
        ([1.0, 2.0, 3.0, 4.0], [2.5, 2.0]),
        ([0.5, 0.5], [0.5, 0.5, 0.5]),  # all ties: 1/2
        ([0.1, 0.2], [0.3, 0.4]),  # never better: 0
    ],
)
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_unpaired_probability_of_improvement_matches_a_double_loop(xs, ys, higher_is_better):
    assert prob_improvement(xs, ys, higher_is_better) == pytest.approx(double_loop(xs, ys, higher_is_better))


@pytest.mark.parametrize(
    "diffs, higher_is_better, improved",
    [
        ([0.01, 0.02, 0.03], True, 3),
        ([0.01, -0.02, 0.0, 0.03, -0.01, 0.02], True, 3),  # a tie is not an improvement
        ([0.01, -0.02, 0.0, 0.03, -0.01, 0.02], False, 2),  # as a loss: the negative ones improved
        ([-0.05] * 8, True, 0),
    ],
)
def test_paired_improvement_counts_seeds_with_a_clopper_pearson_interval(diffs, higher_is_better, improved):
    b, v = pair(diffs)
    imp = paired_comparison(b, v, higher_is_better=higher_is_better, n_resamples=FAST)["paired_improvement"]
    n, k = len(diffs), improved
    assert (imp["improved"], imp["n"], imp["share"]) == (k, n, pytest.approx(k / n))
    # Clopper-Pearson from the beta quantiles (0 and 1 at the ends)
    low = sps.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    high = sps.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    assert (imp["ci_low"], imp["ci_high"]) == (pytest.approx(low), pytest.approx(high))


def test_unpaired_seeds_are_reported_and_not_paired():
    b = {1: 0.80, 2: 0.81, 3: 0.82, 4: 0.83}
    v = {2: 0.85, 3: 0.86, 4: 0.84, 5: 0.99, 6: float("nan")}  # 6 diverged: not completed
    c = paired_comparison(b, v, n_resamples=FAST)
    assert c["paired_seeds"] == [2, 3, 4]
    assert c["unpaired_seeds"] == [1, 5, 6]
    assert c["n"] == 3
    assert c["mean_diff"] == pytest.approx(np.mean([0.85 - 0.81, 0.86 - 0.82, 0.84 - 0.83]))


@pytest.mark.parametrize("n", [0, 1, 2])
def test_small_n_is_graceful_and_silent(n, capsys):
    b, v = pair([0.01, 0.03][:n])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = paired_comparison(b, v, n_resamples=FAST)
        (out,) = verdicts([c], 0.05)
    assert capsys.readouterr() == ("", "")
    assert c["n"] == n
    assert out["verdict"] == "no difference detected"
    assert out["test_used"] == "t-test"  # the permutation test cannot reach 0.05 with n <= 2
    if n < 2:
        assert math.isnan(c["ci_low"]) and math.isnan(c["t_test"]["p"]) and c["ci_method"] is None
        assert math.isnan(out["min_detectable_diff"]) and out["seeds_for_observed"] is None  # undefined
    else:
        assert c["ci_method"] == "t" and not math.isnan(c["t_test"]["p"])
    assert math.isnan(c["mean_diff"]) == (n == 0)


def test_iqm_summary_and_epochs_to_reach():
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert math.isnan(iqm([1.0, 2.0, 3.0]))
    s = summary([0.5, 0.7, 0.6, 0.9])
    assert s["n"] == 4 and s["min"] == 0.5 and s["max"] == 0.9
    assert s["mean"] == pytest.approx(0.675)
    assert s["std"] == pytest.approx(math.sqrt(sum((x - 0.675) ** 2 for x in [0.5, 0.7, 0.6, 0.9]) / 3))
    assert s["iqm"] == pytest.approx((0.6 + 0.7) / 2)
    assert summary([])["n"] == 0 and math.isnan(summary([1.0])["std"])
    curve = {3: 0.91, 1: 0.80, 2: 0.88, 4: 0.87}
    assert epochs_to_reach(curve, 0.88) == 2
    assert epochs_to_reach(curve, 0.95) is None
