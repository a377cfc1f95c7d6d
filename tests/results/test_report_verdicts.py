"""The report's verdicts on the made-up paired sweep of tests/test_report.py: the claim's words from its
arms' verdicts (as an experiment file declares the claim), the seed plan against the non-central t written
out here, and every verdict recomputed from report.json alone (exact sign flips, Holm, the t-interval)."""

from __future__ import annotations

import json
import math
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats as sps

from recipelab.report import ReportOptions, main, report
from recipelab.results.report_arms import choose_baseline, claim_spec
from recipelab.results.report_jobs import Job, variants
from tests.conftest import ROOT
from tests.test_report import ACC, NLL, exact_sign_flip_p, make_paired_sweep, make_sweep

# the claim, as an experiment file declares it: adam and adamw better than sgd on accuracy and nll
CLAIM = {"better": ["optimizer=adam", "optimizer=adamw"], "metrics": ["test/acc", "test/nll"]}


def test_the_claims_words_from_its_arms_and_the_seed_plan(tmp_path, capsys):
    sweep = make_paired_sweep(tmp_path / "sweep", claim=CLAIM)
    main([str(sweep), "report.wandb=false", "report.plan_effect=0.005"])
    out = capsys.readouterr().out
    doc = json.loads((sweep / "report.json").read_text())
    verdicts = {(c["variant"], c["metric"]): c["verdict"]["verdict"] for c in doc["comparisons"]}
    # adam better on both metrics (it gains on every seed), adamw (noise) detects nothing: held and open
    assert {k: v for k, v in verdicts.items() if v != "no difference detected"} == {
        ("optimizer=adam", "test/acc"): "better",
        ("optimizer=adam", "test/nll"): "better",
    }
    claim = doc["claim"]
    assert claim["words"] == "no difference detected at this budget and power"
    assert claim["as_predicted"] == ["optimizer=adam on test/acc", "optimizer=adam on test/nll"]
    assert not claim["against"] and len(claim["undecided"]) == 2
    assert "**Claim: no difference detected at this budget and power.**" in out  # report.md, printed
    assert "\nclaim: no difference detected at this budget and power\n" in out  # its last lines
    # the plan: the fewest seeds with power >= 0.8 for a difference of 0.005 at alpha / 2, by the
    # non-central t written out here, from each arm's spread of paired differences
    for row in doc["plan"]["rows"]:
        values = ACC if row["metric"] == "test/acc" else NLL
        name = row["variant"].removeprefix("optimizer=")
        sd = np.std(values[name] - values["sgd"], ddof=1)
        assert row["sd_diff"] == pytest.approx(sd) and row["level"] == pytest.approx(0.05 / 2)
        assert row["seeds"] == fewest_seeds(0.005, sd, 0.05 / 2)
    assert "## Seed plan: paired seeds to detect a difference of 0.005 with power 0.8" in out


def fewest_seeds(effect, sd, level, target=0.8):
    for n in range(2, 1001):
        crit, nc = sps.t.ppf(1 - level / 2, n - 1), effect * math.sqrt(n) / sd
        if sps.nct.sf(crit, n - 1, nc) + sps.nct.cdf(-crit, n - 1, nc) >= target:
            return n
    return None


def test_every_verdict_can_be_recomputed_from_report_json_alone(tmp_path):
    sweep = make_paired_sweep(tmp_path / "sweep")
    report(sweep, ReportOptions(metrics=("test/acc", "test/nll"), wandb=False))
    doc = json.loads((sweep / "report.json").read_text())  # nothing else is read below
    alpha, base = doc["statistics"]["alpha"], doc["baseline"]["variant"]
    for metric, info in ((m, i) for m, i in doc["metrics"].items() if i["compared"]):
        sign = 1 if info["higher_is_better"] else -1
        values = {(j["variant"], j["seed"]): j["metrics"][metric] for j in doc["jobs"]}
        comps = [c for c in doc["comparisons"] if c["metric"] == metric]
        p = []
        for c in comps:  # 7 seeds, 2 arms: the exact permutation test decides (2 / 2^7 * 2 <= 0.05)
            d = np.array([values[(c["variant"], s)] - values[(base, s)] for s in c["paired_seeds"]])
            p.append(exact_sign_flip_p(d))
        order = np.argsort(p)
        adjusted = np.maximum.accumulate([min(1, (len(p) - i) * p[k]) for i, k in enumerate(order)])
        for i, k in enumerate(order):
            c = comps[k]
            d = np.array([values[(c["variant"], s)] - values[(base, s)] for s in c["paired_seeds"]])
            half = sps.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
            excludes = abs(d.mean()) > half
            label = (
                ("better" if sign * d.mean() > 0 else "worse") if adjusted[i] <= alpha and excludes else None
            )
            assert c["verdict"]["adjusted_p"] == pytest.approx(adjusted[i])
            assert c["verdict"]["verdict"] == (label or "no difference detected")


def test_report_json_keeps_each_seeds_values_the_derived_gap_too(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    for num, acc in {0: 0.99, 1: 0.95}.items():  # recipelab.evaluate split=train, per job
        (sweep / str(num) / "evaluate.json").write_text(json.dumps({"metrics": {"train/acc": acc}}))
    report(sweep, ReportOptions(wandb=False))
    saved = json.loads((sweep / "report.json").read_text())
    seeds = {(j["variant"], j["seed"]): j["metrics"] for j in saved["jobs"]}
    assert seeds[("optimizer=sgd", 2)]["train_test/gap"] == pytest.approx(0.95 - 0.82)
    assert seeds[("optimizer=sgd", 3)] == {"test/acc": 0.85, "test/loss": 0.50}


@pytest.mark.parametrize(
    "claim, words",
    [
        ({"better": "optimizer=adam"}, "report.claim: give `better` and/or `worse`"),
        ({"better": ["optimizer=adam"], "expect": "up"}, "report.claim: give `better` and/or `worse`"),
        ({"worse": ["seed=1"]}, "report.claim.worse: seed=1 matches 3 variants"),
    ],
)
def test_a_malformed_claim_fails_with_one_line_and_exit_2(tmp_path, capsys, claim, words):
    sweep = make_paired_sweep(tmp_path / "sweep", claim=claim)
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), "report.wandb=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and words in err[0]


CLAIMED = [p for p in sorted((ROOT / "conf" / "experiment").glob("*.yaml")) if "claim:" in p.read_text()]


@pytest.mark.parametrize("path", CLAIMED, ids=[p.stem for p in CLAIMED])
def test_each_experiments_claim_names_arms_its_sweep_runs(path):
    """The claim's arms, read as the report reads them from a job's stored config, are variants of the
    experiment's own sweep (one job per variant, made up here), none of them the baseline."""
    cfg = yaml.safe_load(path.read_text())
    params = {k: str(v).split(",") for k, v in cfg["hydra"]["sweeper"]["params"].items() if k != "seed"}
    jobs = [
        Job(Path(str(i)), dict(zip(params, values, strict=True)), {"seed": 1}, {"report": cfg["report"]})
        for i, values in enumerate(product(*params.values()))
    ]
    groups = variants(jobs)
    metrics, arms = claim_spec(groups)
    assert arms and set(arms) <= set(groups) and metrics
    assert choose_baseline(groups, None)[0] not in arms
