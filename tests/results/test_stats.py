"""The paired-comparison statistics, each checked against a value computed here, independently."""

import math
import warnings
from itertools import product

import numpy as np
import pytest
from scipy import stats as sps

from recipelab.results.stats import (
    decisive_test,
    epochs_to_reach,
    holm,
    iqm,
    paired_comparison,
    prob_improvement,
    summary,
    verdict,
)

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
    assert c["ci_method"] == "percentile"  # BCa is degenerate on all-equal differences


def test_sampled_permutation_above_16_is_reproducible():
    diffs = np.random.default_rng(3).normal(0.5, 1.0, 18)
    b, v = pair(diffs)
    c1 = paired_comparison(b, v, n_resamples=FAST)
    c2 = paired_comparison(b, v, n_resamples=FAST, seed=99)  # the permutation test has its own seed
    assert c1["p_perm_exact"] is False
    assert c1["p_perm"] == c2["p_perm"]
    assert 0 < c1["p_perm"] <= 1


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
def test_probability_of_improvement_matches_a_double_loop(xs, ys, higher_is_better):
    assert prob_improvement(xs, ys, higher_is_better) == pytest.approx(double_loop(xs, ys, higher_is_better))
    c = paired_comparison(
        dict(enumerate(ys)), dict(enumerate(xs)), higher_is_better=higher_is_better, n_resamples=FAST
    )
    assert c["prob_improvement"] == pytest.approx(double_loop(xs, ys, higher_is_better))


def test_holm_against_hand_computed_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    out = holm([0.01, float("nan"), 0.04, 0.03])  # NaN stays NaN and does not count toward m
    assert math.isnan(out[1])
    assert [out[0], out[2], out[3]] == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []
    assert all(math.isnan(x) for x in holm([float("nan")] * 2))


def test_holm_is_monotone_and_never_below_the_raw_p():
    p = np.random.default_rng(1).uniform(0, 0.2, 12).tolist()
    adj = holm(p)
    order = np.argsort(p)
    assert all(np.diff(np.array(adj)[order]) >= 0)
    assert all(a >= r for a, r in zip(adj, p, strict=True))
    assert all(a <= 1 for a in adj)


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
        test, p = decisive_test(c)
        out = verdict(c, holm([p])[0])
    assert capsys.readouterr() == ("", "")
    assert c["n"] == n
    assert out["verdict"] == "no difference detected"
    assert test == "t-test"  # the permutation test cannot reach 0.05 with n <= 2
    if n < 2:
        assert math.isnan(c["ci_low"]) and math.isnan(c["t_test"]["p"])
    else:
        assert c["ci_method"] == "percentile" and not math.isnan(c["t_test"]["p"])
    assert math.isnan(c["mean_diff"]) == (n == 0)


def decide(b, v, **kw):
    c = paired_comparison(b, v, n_resamples=2000, **kw)
    test, p = decisive_test(c)
    return c, verdict(c, holm([p])[0], higher_is_better=kw.get("higher_is_better", True))


def test_the_permutation_test_decides_only_where_holm_lets_it_reach_alpha():
    c = paired_comparison(*pair([0.02, 0.025, 0.021, 0.03, 0.018, 0.024]), n_resamples=FAST)  # 6 seeds
    assert c["p_perm"] == pytest.approx(2 / 2**6)  # the smallest a 6-seed sign-flip test can give
    assert decisive_test(c, family=1) == ("permutation", c["p_perm"])
    assert decisive_test(c, family=2) == ("t-test", c["t_test"]["p"])  # Holm: 2 * 2/64 > 0.05
    assert verdict(c, holm([c["t_test"]["p"]] * 2)[0], family=2)["verdict"] == "better"


def test_identical_variants_show_no_difference():
    b = {s: 0.85 + 0.01 * s for s in range(6)}
    c, out = decide(b, dict(b))
    assert out["verdict"] == "no difference detected"
    assert c["prob_improvement"] == 0.5


def test_a_clearly_worse_variant_over_six_seeds():
    b = {s: 0.90 + 0.002 * s for s in range(6)}
    v = {s: b[s] - d for s, d in enumerate([0.03, 0.025, 0.04, 0.035, 0.02, 0.03])}
    _, out = decide(b, v)
    assert out["test_used"] == "permutation"  # 2/2^6 = 0.031 <= 0.05
    assert out["p"] == pytest.approx(2 / 64)
    assert out["verdict"] == "worse"
    _, lower = decide(b, v, higher_is_better=False)  # the same numbers as a loss: lower is better
    assert lower["verdict"] == "better"


def test_three_seeds_with_a_large_consistent_gain_use_the_t_test():
    b = {1: 0.80, 2: 0.81, 3: 0.79}
    v = {1: 0.85, 2: 0.865, 3: 0.838}
    c, out = decide(b, v)
    assert c["p_perm"] == pytest.approx(0.25)
    assert out["test_used"] == "t-test"
    assert out["p"] < 0.05
    assert out["verdict"] == "better"


def test_min_detectable_diff_formula():
    b = {s: 0.80 + 0.01 * s for s in range(4)}
    v = {s: b[s] + d for s, d in enumerate([0.01, 0.03, 0.02, 0.00])}
    c, out = decide(b, v)
    d = np.array([v[s] - b[s] for s in range(4)])
    z = 1.959963984540054 + 0.8416212335729143  # z_0.975 + z_0.8
    assert out["min_detectable_diff"] == pytest.approx(z * d.std(ddof=1) / 2)
    one = paired_comparison(b, {0: 0.9}, n_resamples=FAST)  # n = 1: the baseline's spread times sqrt 2
    expected = z * np.std(list(b.values()), ddof=1) * math.sqrt(2)
    assert verdict(one, 1.0)["min_detectable_diff"] == pytest.approx(expected)


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
