"""The ablation report on sweep folders laid out as Hydra and train.py write them, with made-up numbers:
old records (CSV histories, no W&B), and records with history, cost and config whose statistics the tests
recompute by hand (exact sign-flip enumeration, Holm, IQM, probability of improvement, improved seeds)."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from recipelab.records.wandb_file import read_run, run_files
from recipelab.report import ReportOptions, main, report

OFF = ReportOptions(wandb=False)

# (optimizer, seed, status, test/acc, test/loss, val/acc per epoch)
JOBS = [
    ("sgd", 1, "completed", 0.80, 0.60, [0.70, 0.78, 0.77]),
    ("sgd", 2, "completed", 0.82, 0.55, [0.72, 0.80, 0.81]),
    ("sgd", 3, "completed", 0.85, 0.50, [0.71, 0.79, 0.80]),
    ("adam", 1, "completed", 0.88, 0.40, [0.80, 0.86, 0.85]),
    ("adam", 2, "diverged", None, None, []),
    ("adam", 3, None, None, None, []),  # died before writing its record
]


def make_sweep(root):
    for num, (opt, seed, status, acc, loss, curve) in enumerate(JOBS):
        job = root / str(num)
        (job / ".hydra").mkdir(parents=True)
        overrides = ["trainer.max_epochs=3", f"optimizer={opt}", f"seed={seed}"]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if status:
            metrics = {"test/acc": acc, "test/loss": loss} if acc else {}
            record = {"status": status, "metrics": metrics, "wall_time_s": 10.0 + num, "seed": seed}
            (job / "metrics.json").write_text(json.dumps(record))
        (job / "csv").mkdir()
        with (job / "csv" / "metrics.csv").open("w") as f:
            f.write("epoch,step,train/loss,val/acc\n")
            for epoch, v in enumerate(curve):
                f.write(f"{epoch},{10 * epoch},0.5,\n{epoch},{10 * epoch},,{v}\n")
    return root


def test_one_row_per_variant_with_the_numbers_of_its_completed_jobs(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    report(sweep, OFF)
    with (sweep / "report.csv").open() as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"optimizer=sgd", "optimizer=adam"}  # the seed is not a variant

    sgd, adam = rows["optimizer=sgd"], rows["optimizer=adam"]
    accs, losses = np.array([0.80, 0.82, 0.85]), np.array([0.60, 0.55, 0.50])
    assert float(sgd["test/acc mean"]) == pytest.approx(accs.mean())
    assert float(sgd["test/acc std"]) == pytest.approx(accs.std(ddof=1))
    assert float(sgd["test/loss mean"]) == pytest.approx(losses.mean())
    assert float(sgd["test/loss std"]) == pytest.approx(losses.std(ddof=1))
    assert (sgd["n"], sgd["completed"], sgd["failed"], sgd["diverged"]) == ("3", "3", "0", "0")
    curve = np.mean([[0.70, 0.78, 0.77], [0.72, 0.80, 0.81], [0.71, 0.79, 0.80]], axis=0)
    assert sgd["best epoch"] == str(int(curve.argmax()))
    assert float(sgd["wall time s"]) == pytest.approx(11.0)
    assert sgd["baseline"] == "True" and sgd["test/acc verdict"] == ""  # the first variant

    assert (adam["n"], adam["completed"], adam["failed"], adam["diverged"]) == ("3", "1", "1", "1")
    assert float(adam["test/acc mean"]) == pytest.approx(0.88) and adam["best epoch"] == "1"
    assert adam["test/acc paired seeds"] == "1"  # seeds 2 and 3 of adam never completed
    assert float(adam["test/acc diff"]) == pytest.approx(0.88 - 0.80)
    assert adam["test/acc verdict"] == "no difference detected"
    # epochs to reach sgd's final mean val/acc (0.7933): adam's 0.80 at its first, sgd's own at its third
    assert adam["epochs to baseline val/acc"] == "1" and sgd["epochs to baseline val/acc"] == "3"


def test_the_train_test_gap_from_each_jobs_evaluate_json(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    train_acc = {0: 0.99, 1: 0.95, 2: 0.97, 3: 0.90}  # recipelab.evaluate split=train, per job
    for num, acc in train_acc.items():
        # evaluate.json's own test/acc must not replace the run's (metrics.json's)
        evaluated = {"split": "train", "metrics": {"train/acc": acc, "test/acc": 0.5}}
        (sweep / str(num) / "evaluate.json").write_text(json.dumps(evaluated))
    doc = report(sweep, ReportOptions(metrics=("train_test/gap",), wandb=False))
    rows = {v["variant"]: v["metrics"] for v in doc["variants"]}
    gaps = np.array([0.99 - 0.80, 0.95 - 0.82, 0.97 - 0.85])
    assert rows["optimizer=sgd"]["train_test/gap"]["mean"] == pytest.approx(gaps.mean())
    assert rows["optimizer=sgd"]["test/acc"]["mean"] == pytest.approx(np.mean([0.80, 0.82, 0.85]))
    assert rows["optimizer=adam"]["train_test/gap"]["mean"] == pytest.approx(0.90 - 0.88)
    assert "train_test/gap (lower is better)" in (sweep / "report.md").read_text()


def test_markdown_marks_failed_and_diverged_jobs_and_the_plots_exist(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    report(sweep, OFF)
    md = (sweep / "report.md").read_text()
    accs = np.array([0.80, 0.82, 0.85])
    assert f"| optimizer=sgd | 3 | {accs.mean():.4f} ± {accs.std(ddof=1):.4f} |" in md
    assert "| 4 | `optimizer=adam seed=2` | **DIVERGED** | — |" in md
    assert "| 5 | `optimizer=adam seed=3` | **FAILED** | — |" in md
    assert "Unpaired in `optimizer=adam`: seed 2, 3" in md
    for png in ("accuracy.png", "val_curves.png", "paired_diff.png"):
        assert (sweep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_jobs_fails_with_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no sweep jobs" in err[0]


@pytest.mark.parametrize(
    "arg, words",
    [
        ("report.basline=x", "unknown option report.basline"),
        ("baseline=optimizer=sgd", "unknown option baseline"),
        ("report.alpha=5", "report.alpha=5: must be a number between 0 and 1"),
        ("report.wandb=maybe", "report.wandb=maybe: must be true or false"),
        ("report.baseline=optimizer=rmsprop", "matches no variant (optimizer=sgd; optimizer=adam)"),
        ("report.metrics=[test/acc,test/brier]", "report.metrics: test/brier in no job's record"),
        ("report.plan_effect=-0.01", "report.plan_effect=-0.01: must be a positive difference"),
    ],
)
def test_bad_options_fail_with_one_line_and_exit_2(tmp_path, capsys, arg, words):
    sweep = make_sweep(tmp_path / "sweep")
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), arg])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and words in err[0]
    assert not (sweep / "report.json").exists()


# seven seeds: 2 / 2^7 lets the exact sign-flip test reach 0.05, so it decides
SEEDS = [1, 2, 3, 4, 5, 6, 7]
BASE = np.array([0.80, 0.81, 0.79, 0.83, 0.82, 0.80, 0.84])
GAIN = np.array([0.05, 0.03, 0.06, 0.04, 0.05, 0.02, 0.07])  # every seed better
NOISE = np.array([0.01, -0.02, 0.015, -0.01, 0.0, 0.02, -0.005])
ACC = {"sgd": BASE, "adam": BASE + GAIN, "adamw": BASE + NOISE}
NLL = {"sgd": 1 - BASE, "adam": 1 - BASE - GAIN, "adamw": 1 - BASE - NOISE}  # lower is better
CURVES = {"sgd": [0.5, 0.6, 0.7], "adam": [0.6, 0.72, 0.75], "adamw": [0.4, 0.5, 0.6]}


def make_paired_sweep(root, claim=None):
    """Three optimizers over seven seeds; records as train.py writes them (history, cost, provenance)."""
    for num, (opt, seed) in enumerate(itertools.product(ACC, SEEDS)):
        job = root / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optimizer={opt}", f"seed={seed}"]))
        config = {"seed": seed, "data": {"train_count": 60000, "val_size": 5000, "train_size": 2000}}
        config |= {"report": {"claim": claim}} if claim else {}
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        i = SEEDS.index(seed)
        record = {
            "status": "completed",
            "seed": seed,
            "group": "2025-01-01_00-00-00_ablate",
            "metrics": {"test/acc": float(ACC[opt][i]), "test/nll": float(NLL[opt][i])},
            "history": [
                {"epoch": e, "step": 10 * e, "time_s": (10.0 + seed) * (e + 1) / 3, "val/acc": v}
                for e, v in enumerate(CURVES[opt])
            ],
            "train_time_s": 10.0 + seed,
            "epochs": 3,
            "steps": 20,
            "provenance": {"git_commit": "abc", "git_dirty": False, "device": "cpu", "versions": {}},
        }
        (job / "metrics.json").write_text(json.dumps(record))
    return root


def exact_sign_flip_p(d: np.ndarray) -> float:
    """Two-sided p of the mean difference over all 2^n sign patterns."""
    flips = np.array(list(itertools.product([1, -1], repeat=d.size)))
    return float(np.mean(np.abs(flips @ d) >= abs(d.sum()) - 1e-12))


def test_paired_statistics_match_an_exact_computation(tmp_path):
    sweep = make_paired_sweep(tmp_path / "sweep")
    doc = report(sweep, ReportOptions(metrics=("test/acc", "test/nll"), wandb=False))
    assert doc["baseline"]["variant"] == "optimizer=sgd" and doc["baseline"]["chosen_by"] == "first variant"
    assert doc["baseline"]["final_mean_val_acc"] == pytest.approx(0.7)
    comps = {(c["variant"], c["metric"]): c for c in doc["comparisons"]}
    for metric, values in (("test/acc", ACC), ("test/nll", NLL)):
        p = {v: exact_sign_flip_p(values[v] - values["sgd"]) for v in ("adam", "adamw")}
        smaller, larger = sorted(p, key=p.get)
        holm = {smaller: 2 * p[smaller], larger: max(2 * p[smaller], p[larger])}  # Holm, m = 2
        for v in ("adam", "adamw"):
            c = comps[(f"optimizer={v}", metric)]
            d = values[v] - values["sgd"]
            assert c["paired_seeds"] == SEEDS and c["mean_diff"] == pytest.approx(d.mean())
            assert c["p_perm"] == pytest.approx(p[v]) and c["p_perm_exact"]
            assert c["verdict"]["test_used"] == "permutation"
            assert c["verdict"]["adjusted_p"] == pytest.approx(min(1, holm[v]))
            sign = 1 if metric == "test/acc" else -1
            wins = sign * (values[v][:, None] - values["sgd"][None, :])
            assert c["prob_improvement_unpaired"] == pytest.approx(np.mean((wins > 0) + 0.5 * (wins == 0)))
            assert c["paired_improvement"]["improved"] == np.sum(sign * d > 0)  # paired: seeds improved
        assert comps[("optimizer=adam", metric)]["verdict"]["verdict"] == "better"  # lower nll is better
        assert comps[("optimizer=adamw", metric)]["verdict"]["verdict"] == "no difference detected"
    rows = {v["variant"]: v for v in doc["variants"]}
    adam = rows["optimizer=adam"]
    assert adam["metrics"]["test/acc"]["iqm"] == pytest.approx(
        np.sort(ACC["adam"])[1:-1].mean()
    )  # 7 // 4 cut
    assert adam["cost"]["epochs_to_baseline_val_acc"] == 2  # 0.72 >= sgd's final 0.7 at its second epoch
    # the training seconds by the end of that epoch, averaged over adam's seeds
    assert adam["cost"]["seconds_to_baseline_val_acc"] == pytest.approx(
        np.mean([(10.0 + s) * 2 / 3 for s in SEEDS])
    )
    assert rows["optimizer=adamw"]["cost"]["epochs_to_baseline_val_acc"] is None  # never reaches 0.7
    speeds = [min(60000 - 5000, 2000) * 3 / (10.0 + s) for s in SEEDS]
    assert adam["cost"]["images_per_s"] == pytest.approx(np.mean(speeds))
    md = (sweep / "report.md").read_text()
    assert "| better (permutation, Holm p = " in md and "test/nll (lower is better)" in md
    assert f"| 2 ({adam['cost']['seconds_to_baseline_val_acc']:.1f} s) |" in md


def test_the_report_run_in_wandb_holds_the_tables_and_the_plots(tmp_path, monkeypatch):
    sweep = make_paired_sweep(tmp_path / "sweep")
    # its own process, as the command runs: no W&B state left by other tests in this one
    proc = subprocess.run(
        [sys.executable, "-m", "recipelab.report", str(sweep), "report.wandb=true"],
        env={**os.environ, "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = run_files(sweep)
    run = read_run(path)
    assert run.job_type == "report" and run.group == "2025-01-01_00-00-00_ablate"
    logged = {k: v for h in run.history for k, v in h.items()}
    assert logged["report/_type"] == logged["comparisons/_type"] == "table-file"
    assert logged["report/nrows"] == 3 and logged["comparisons/nrows"] == 2
    for plot in ("accuracy", "val_curves", "paired_diff"):
        assert logged[f"plots/{plot}/_type"] == "image-file"


def test_without_a_folder_the_newest_sweep_under_logs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    old = make_sweep(tmp_path / "logs/multiruns/2025-01-01/10-00-00_old")
    new = make_sweep(tmp_path / "logs/multiruns/2025-01-02/09-00-00_new")
    main(["report.wandb=false", "report.baseline=optimizer=adam"])
    assert (new / "report.json").is_file() and not (old / "report.json").exists()
    assert "baseline optimizer=adam" in capsys.readouterr().out
