"""The verdicts: Holm over a family counted one way, the rule that picks the deciding test, both conditions
of an arm's verdict, the share of false verdicts when nothing differs, and a claim's words. Expected values
are computed here (by hand, by enumeration, by simulation), never copied from the code's output."""

import math
from itertools import product

import numpy as np
import pytest
from scipy import stats as sps

from recipelab.results.stats import deciding_test_rule, paired_comparison
from recipelab.results.verdict import (
    CONFIRMED,
    NOT_CONFIRMED,
    UNDECIDED,
    claim_verdict,
    holm,
    verdicts,
)

NAN = float("nan")
ALPHA = 0.05


def pair(diffs, base=None):
    """Baseline and variant dicts over seeds 0..n-1 whose differences are ``diffs``."""
    base = np.linspace(0.80, 0.90, len(diffs)) if base is None else base
    baseline = {i: float(b) for i, b in enumerate(base)}
    return baseline, {i: baseline[i] + float(d) for i, d in enumerate(diffs)}


def compare(diffs, base=None):
    return paired_comparison(*pair(diffs, base), n_resamples=200)


def test_holm_against_hand_computed_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_holm_counts_arms_without_a_p_in_the_family():
    out = holm([0.01, NAN, 0.04, 0.03])  # m = 4: the arm without a p counts, as the largest
    assert math.isnan(out[1])  # and never rejects
    assert [out[0], out[3], out[2]] == pytest.approx([4 * 0.01, 3 * 0.03, max(3 * 0.03, 2 * 0.04)])
    assert all(math.isnan(x) for x in holm([NAN] * 2))


def test_holm_is_monotone_and_never_below_the_raw_p():
    p = np.random.default_rng(1).uniform(0, 0.2, 12).tolist()
    adj = holm(p)
    order = np.argsort(p)
    assert all(np.diff(np.array(adj)[order]) >= 0)
    assert all(a >= r for a, r in zip(adj, p, strict=True))
    assert all(a <= 1 for a in adj)


def smallest_sign_flip_p(n: int) -> float:
    """The smallest two-sided sign-flip p with n seeds, by enumeration: n distinct gains of one sign."""
    d = np.arange(1.0, n + 1)
    return float(np.mean([abs(np.dot(s, d)) >= d.sum() for s in product((1, -1), repeat=n)]))


@pytest.mark.parametrize("n", [5, 6, 7, 8])
@pytest.mark.parametrize("family", [1, 2, 4])
def test_the_permutation_test_decides_only_where_its_smallest_p_passes_holms_first_step(n, family):
    c = compare(0.01 * np.arange(1.0, n + 1))
    others = [compare([0.01])] * (family - 1)  # 1-seed arms: in the family, without a p
    out = verdicts([c, *others], ALPHA)[0]
    expected = "permutation" if smallest_sign_flip_p(n) * family <= ALPHA else "t-test"
    assert (out["test_used"], out["family"]) == (expected, family)
    assert out["p"] == (c["p_perm"] if expected == "permutation" else c["t_test"]["p"])


def test_the_rule_in_words_states_the_seeds_it_implies():
    text = deciding_test_rule(ALPHA)
    # the seeds where 2 / 2^n * m <= 0.05: 6 for m = 1, 7 for m = 2-3, 8 for m = 4-6
    assert "n ≥ 6 for 1 arm, 7 for 2–3 arms, 8 for 4–6 arms" in text and "else the paired t-test" in text


def test_an_arm_without_pairs_counts_in_the_family_everywhere():
    d = [0.01, 0.015, 0.02]  # t = 0.015 / (0.005 / sqrt 3): p ~ 0.035
    t = np.mean(d) / (np.std(d, ddof=1) / math.sqrt(3))
    p = 2 * sps.t.sf(t, 2)
    out = verdicts([compare(d), compare([0.02]), compare([])], ALPHA)
    assert [o["family"] for o in out] == [3, 3, 3]
    assert out[0]["adjusted_p"] == pytest.approx(3 * p)  # Holm over 3, not over the 1 finite p
    assert out[0]["power_level"] == pytest.approx(ALPHA / 3)
    assert math.isnan(out[1]["adjusted_p"]) and math.isnan(out[2]["adjusted_p"])
    assert all(o["verdict"] == "no difference detected" for o in out)


def t_interval(d, level=0.95):
    d = np.asarray(d, dtype=float)
    half = sps.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return d.mean() - half, d.mean() + half


def test_a_rejecting_test_whose_interval_includes_zero_detects_nothing():
    d = [10.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]  # 7 seeds: the exact permutation test decides
    low, high = t_interval(d)
    assert low < 0 < high  # one large seed: the t-interval spans 0
    (out,) = verdicts([compare(d, base=np.zeros(7))], ALPHA)
    assert out["test_used"] == "permutation"
    assert out["adjusted_p"] == pytest.approx(2 / 2**7)  # only the two all-same-sign patterns reach it
    assert not out["ci_excludes_zero"]
    assert out["verdict"] == "no difference detected"  # p alone would say better


def test_an_interval_excluding_zero_without_a_corrected_rejection_detects_nothing():
    d = [0.01, 0.015, 0.02]
    low, high = t_interval(d)
    assert low > 0  # alone, the interval would say better
    out = verdicts([compare(d), *[compare([0.01])] * 3], ALPHA)[0]  # a family of 4
    assert out["ci_excludes_zero"] and out["adjusted_p"] > ALPHA
    assert out["verdict"] == "no difference detected"
    (alone,) = verdicts([compare(d)], ALPHA)  # a family of 1: Holm's p ~ 0.035, both conditions hold
    assert alone["verdict"] == "better"


def test_no_true_difference_gives_false_verdicts_at_most_alpha():
    """Two arms with no true effect, seeded noise on every seed, through the report's own functions: the
    share of families with any better/worse verdict stays at or below alpha, within 2 simulation SEs."""
    rng = np.random.default_rng(2024)
    reps = 400
    limit = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / reps)
    for n in (3, 6, 8):
        false = 0
        for _ in range(reps):
            base = rng.normal(0.9, 0.01, n)
            arms = [base + rng.normal(0.0, 0.004, n) for _ in range(2)]
            baseline = dict(enumerate(base))
            comps = [paired_comparison(baseline, dict(enumerate(a)), n_resamples=200) for a in arms]
            false += any(v["verdict"] != "no difference detected" for v in verdicts(comps, ALPHA))
        assert false / reps <= limit, (n, false / reps)


def decide(b, v, **kw):
    (out,) = verdicts([paired_comparison(b, v, n_resamples=200, **kw)], ALPHA)
    return out


def test_identical_variants_show_no_difference():
    b = {s: 0.85 + 0.01 * s for s in range(6)}
    assert decide(b, dict(b))["verdict"] == "no difference detected"


def test_a_clearly_worse_variant_over_six_seeds():
    b = {s: 0.90 + 0.002 * s for s in range(6)}
    v = {s: b[s] - d for s, d in enumerate([0.03, 0.025, 0.04, 0.035, 0.02, 0.03])}
    out = decide(b, v)
    assert out["test_used"] == "permutation"  # 2/2^6 = 0.031 <= 0.05
    assert out["p"] == pytest.approx(2 / 64)
    assert out["verdict"] == "worse"
    assert decide(b, v, higher_is_better=False)["verdict"] == "better"  # as a loss: lower is better


def test_three_seeds_with_a_large_consistent_gain_use_the_t_test():
    out = decide({1: 0.80, 2: 0.81, 3: 0.79}, {1: 0.85, 2: 0.865, 3: 0.838})
    assert out["test_used"] == "t-test" and out["p"] < ALPHA
    assert out["verdict"] == "better"


A, B, C = "optimizer=momentum", "optimizer=nesterov", "data.batch_size=full"


@pytest.mark.parametrize(
    "labels, words",
    [
        ({A: "better", B: "better", C: "worse"}, CONFIRMED),  # every prediction holds
        ({A: "better", B: "worse", C: "worse"}, NOT_CONFIRMED),  # one named arm against: whatever the rest
        ({A: "better", B: "no difference detected", C: "better"}, NOT_CONFIRMED),  # C predicted worse
        ({A: "better", B: "no difference detected", C: "worse"}, UNDECIDED),  # mixed: held and open
        ({A: "better", C: "worse"}, UNDECIDED),  # B not compared (not in this sweep)
        ({A: "no difference detected", B: "no difference detected", C: "no difference detected"}, UNDECIDED),
    ],
)
def test_claim_words_from_the_named_arms_verdicts(labels, words):
    predictions = [(A, "test/acc", "better"), (B, "test/acc", "better"), (C, "test/acc", "worse")]
    out = claim_verdict(predictions, {(arm, "test/acc"): label for arm, label in labels.items()})
    assert out["words"] == words
    held = [a for a, _, p in predictions if labels.get(a) == p]
    assert out["as_predicted"] == [f"{a} on test/acc" for a in held]
    assert len(out["as_predicted"]) + len(out["against"]) + len(out["undecided"]) == 3


def test_an_arm_the_claim_does_not_name_does_not_count():
    labels = {(A, "test/acc"): "better", ("optimizer=adam", "test/acc"): "worse"}
    assert claim_verdict([(A, "test/acc", "better")], labels)["words"] == CONFIRMED
