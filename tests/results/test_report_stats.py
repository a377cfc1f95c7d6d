"""The report's verdicts on real sweeps (tiny: 300 images, 2 epochs): two spellings of one recipe show no
difference, a learning rate that never learns is worse; every number checked against the job records."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
from scipy import stats as scipy_stats

from recipelab.dashboard import main as dashboard_main
from recipelab.report import ReportOptions, main, report
from recipelab.results.dashboard import load_spec
from recipelab.results.table import write_table
from tests.conftest import train_cli

SMALL = [
    "trainer=quiet",
    "trainer.max_epochs=2",
    "data.train_size=300",
    "data.val_size=300",
    "data.batch_size=20",
    "trainer.limit_test_batches=2",
    "augmentation=none",
    "scheduler=none",
    "optimizer=adam",
    "logger=csv",
]
GOOD, BROKEN = "optimizer.lr=0.003, tags=[a]", "optimizer.lr=1e-06, tags=[a]"
SAME = "optimizer.lr=0.003, tags=[b]"  # tags change nothing in training: the same recipe as GOOD
OFF = ReportOptions(wandb=False)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One folder of 8 jobs from two sweeps: lr 0.003 (the baseline) and 1e-6 over seeds 1-3 (tags [a]),
    and lr 0.003 with tags [b] over seeds 1-2 (seed 3 of the baseline stays unpaired there)."""
    root = tmp_path_factory.mktemp("report_stats")
    merged = root / "sweep"
    merged.mkdir()
    done: set = set()
    for sweep_args in (
        ["optimizer.lr=0.003,1e-6", "tags=[a]", "seed=1,2,3"],
        ["optimizer.lr=0.003", "tags=[b]", "seed=1,2"],
    ):
        run = train_cli(root / "logs", "-m", *SMALL, *sweep_args, quick=False)  # one log_dir: same overrides
        assert run.proc.returncode == 0, run.proc.stderr[-3000:]
        for job in [d for d in run.run_dirs if d not in done]:
            shutil.copytree(job, merged / str(len(done)))
            done.add(job)
    return merged


def records(sweep) -> dict[str, list[dict]]:
    """variant → the records of its jobs, read here from metrics.json and overrides, independently."""
    out: dict[str, list[dict]] = {}
    for path in sorted(sweep.glob("*/metrics.json")):
        r = {**json.loads(path.read_text()), "dir": path.parent}
        o = dict(x.split("=", 1) for x in r["overrides"])
        out.setdefault(f"optimizer.lr={o['optimizer.lr']}, tags={o['tags']}", []).append(r)
    return out


def val_accs(job_dir) -> list[float]:
    """val/acc per epoch from the job's CSV log (metrics.json's history rows are what the report reads)."""
    with (job_dir / "csv" / "metrics.csv").open() as f:
        return [float(r["val/acc"]) for r in csv.DictReader(f) if r["val/acc"]]


def by_seed(recs: list[dict], metric: str = "test/acc") -> dict[int, float]:
    return {r["seed"]: r["metrics"][metric] for r in recs if r["status"] == "completed"}


@pytest.fixture(scope="module")
def doc(sweep):
    return report(sweep, OFF)


def comparison(doc, variant, metric="test/acc"):
    (c,) = [c for c in doc["comparisons"] if c["variant"] == variant and c["metric"] == metric]
    return c


def test_same_recipe_no_difference_broken_recipe_worse_by_the_t_test(sweep, doc):
    recs = records(sweep)
    assert set(recs) == {GOOD, BROKEN, SAME} and doc["baseline"]["variant"] == GOOD  # the first variant
    base = by_seed(recs[GOOD])
    ps = {}
    for variant in (BROKEN, SAME):
        other = by_seed(recs[variant])
        seeds = sorted(base.keys() & other.keys())
        d = np.array([other[s] - base[s] for s in seeds])
        c = comparison(doc, variant)
        assert c["paired_seeds"] == seeds and c["mean_diff"] == pytest.approx(d.mean())
        if np.ptp(d) > 0:  # the t statistic by hand
            t = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
            ps[variant] = 2 * scipy_stats.t.sf(abs(t), d.size - 1)
            assert c["t_test"]["p"] == pytest.approx(ps[variant])
    broken, same = comparison(doc, BROKEN), comparison(doc, SAME)
    assert broken["n"] == 3 and broken["p_perm_min"] == pytest.approx(0.25)  # 2 / 2^3: cannot reach 0.05
    assert broken["verdict"]["test_used"] == "t-test"
    # Holm over both arms: SAME's p may be undefined (equal differences) but it counts in the family
    assert broken["verdict"]["family"] == 2
    assert broken["verdict"]["adjusted_p"] == pytest.approx(min(1, 2 * ps[BROKEN]))
    assert broken["verdict"]["verdict"] == "worse" and broken["ci_high"] < 0
    assert broken["prob_improvement_unpaired"] == 0.0  # no broken run beats any baseline run
    assert broken["paired_improvement"]["improved"] == 0  # nor its own seed's
    assert same["n"] == 2 and same["unpaired_seeds"] == [3]
    assert same["unpaired_jobs"] == [{"job": "2", "side": "baseline", "seed": 3, "status": "completed"}]
    assert same["verdict"]["verdict"] == "no difference detected"
    md = (sweep / "report.md").read_text()
    assert f"| {BROKEN} | 3 |" in md and "| worse (t-test, Holm p = " in md
    assert "no difference detected" in md and f"Unpaired in `{SAME}`: seed 3" in md


def test_report_numbers_match_the_job_records(sweep, doc):
    recs = records(sweep)
    rows = {v["variant"]: v for v in doc["variants"]}
    base_curve = np.mean([val_accs(r["dir"]) for r in recs[GOOD]], axis=0)
    for variant, rs in recs.items():
        row = rows[variant]
        for metric in ("test/acc", "test/loss"):
            x = np.array([r["metrics"][metric] for r in rs])
            s = row["metrics"][metric]
            assert (s["n"], s["mean"], s["std"]) == (
                len(rs),
                pytest.approx(x.mean()),
                pytest.approx(x.std(ddof=1)),
            )
            assert (s["min"], s["max"]) == (x.min(), x.max())
        curve = np.array([val_accs(r["dir"]) for r in rs])
        assert [p["mean"] for p in row["val_curve"]] == pytest.approx(curve.mean(axis=0).tolist())
        half = scipy_stats.t.ppf(0.975, len(rs) - 1) * curve.std(axis=0, ddof=1) / math.sqrt(len(rs))
        assert [p["high"] for p in row["val_curve"]] == pytest.approx((curve.mean(axis=0) + half).tolist())
        times = np.array([r["train_time_s"] for r in rs])
        assert row["cost"]["train_time_s"] == pytest.approx(times.mean())
        assert row["cost"]["images_per_s"] == pytest.approx(np.mean(300 * 2 / times))  # 300 images, 2 epochs
        reached = np.flatnonzero(curve.mean(axis=0) >= base_curve[-1])
        expected = int(reached[0]) + 1 if reached.size else None
        assert row["cost"]["epochs_to_baseline_val_acc"] == expected
    assert rows[GOOD]["cost"]["epochs_to_baseline_val_acc"] is not None
    saved = json.loads((sweep / "report.json").read_text())
    assert saved["baseline"]["variant"] == GOOD and len(saved["comparisons"]) == 2
    assert saved["variants"][0]["metrics"]["test/acc"]["iqm"] is None  # 3 seeds: no IQM (NaN → null)
    for png in ("accuracy.png", "val_curves.png", "paired_diff.png"):
        assert (sweep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def copy(sweep, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(sweep, out, ignore=shutil.ignore_patterns("report.*", "*.png"))
    return out


def test_a_job_without_record_leaves_its_seed_unpaired(sweep, tmp_path):
    s = copy(sweep, tmp_path)
    (s / "4" / "metrics.json").unlink()  # lr 1e-6, seed 2: as if it died before writing its record
    doc = report(s, OFF)
    c = comparison(doc, BROKEN)
    assert c["paired_seeds"] == [1, 3] and c["unpaired_seeds"] == [2]
    assert {"job": "4", "side": "variant", "seed": 2, "status": "failed"} in c["unpaired_jobs"]
    base, broken = by_seed(records(sweep)[GOOD]), by_seed(records(sweep)[BROKEN])
    assert c["mean_diff"] == pytest.approx(np.mean([broken[s] - base[s] for s in (1, 3)]))
    (row,) = [v for v in doc["variants"] if v["variant"] == BROKEN]
    assert (row["n"], row["completed"], row["failed"]) == (3, 2, 1)
    md = (s / "report.md").read_text()
    assert "| 4 | `optimizer.lr=1e-06 tags=[a] seed=2` | **FAILED** | — |" in md
    assert f"Unpaired in `{BROKEN}`: seed 2" in md


def test_baseline_from_the_option_and_from_the_experiment_config(sweep, tmp_path, capsys):
    s = copy(sweep, tmp_path)
    main([str(s), "report.baseline=optimizer.lr=1e-6 tags=[a]", "report.wandb=false"])
    doc = json.loads((s / "report.json").read_text())
    assert doc["baseline"] == {**doc["baseline"], "variant": BROKEN, "chosen_by": "report.baseline option"}
    assert comparison(doc, GOOD)["mean_diff"] > 0 and comparison(doc, SAME)["mean_diff"] > 0
    config = s / "5" / ".hydra" / "config.yaml"
    config.write_text(config.read_text() + "report:\n  baseline: tags=[b]\n")  # as an experiment declares it
    assert report(s, OFF)["baseline"]["variant"] == SAME
    with pytest.raises(SystemExit) as exit_info:
        main([str(s), "report.baseline=optimizer.lr=0.003", "report.wandb=false"])  # two variants match
    assert exit_info.value.code == 2 and "matches 2 variants" in capsys.readouterr().err


def test_mixed_code_is_refused_unless_allowed(sweep, tmp_path, capsys):
    s = copy(sweep, tmp_path)
    record = json.loads((s / "3" / "metrics.json").read_text())
    assert record["provenance"]["git_commit"] is not None  # train.py records it
    record["provenance"]["git_commit"] = "0" * 40
    (s / "3" / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit) as exit_info:
        main([str(s), "report.wandb=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "report.allow_mixed_code=true" in err[0]
    assert "0 (" in err[0] and "3 (0000000000" in err[0]  # baseline job 0 with lr 1e-6 job 3 (seed 1)
    assert not (s / "report.json").exists()
    main([str(s), "report.allow_mixed_code=true", "report.wandb=false", "report.metrics=[test/acc,test/nll]"])
    doc = json.loads((s / "report.json").read_text())
    assert doc["provenance"]["mixed"] and len(doc["provenance"]["mixed_pairs"]) == 1
    nll = comparison(doc, BROKEN, "test/nll")
    assert not nll["higher_is_better"] and nll["verdict"]["verdict"] in ("worse", "no difference detected")


def test_dashboard_entry_writes_the_sweeps_view_offline(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    s = copy(sweep, tmp_path)
    dashboard_main([str(s)])
    assert str(s / "dashboard.json") in capsys.readouterr().out
    view = json.loads((s / "dashboard.json").read_text())
    [runset] = view["spec"]["section"]["runSets"]
    group = json.loads((s / "0" / "metrics.json").read_text())["group"]
    assert runset["filters"]["filters"][0]["value"] == group
    assert [g["name"] for g in runset["grouping"]] == ["optimizer.value.lr", "tags.value"]  # the swept keys
    assert [g.name for g in load_spec(s / "dashboard.json").runset_settings.groupby] == [
        "optimizer.lr",
        "tags",
    ]


def test_results_table_has_a_row_per_job_of_the_sweep(sweep, tmp_path):
    s = copy(sweep, tmp_path)
    path, count = write_table(s)
    with path.open() as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert count == len(rows) == len(list(s.glob("*/metrics.json"))) == 8
    for job, row in rows.items():
        record = json.loads((s / job / "metrics.json").read_text())
        assert float(row["test/acc"]) == record["metrics"]["test/acc"] and row["optimizer"] == "adam"
        assert row["git_commit"] == record["provenance"]["git_commit"] and row["seed"] == str(record["seed"])
