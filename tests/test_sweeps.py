"""Sweeps through the real command line: a job per folder and W&B run, divergence that does not stop the
sweep, a summary at the end, re-runs that skip finished jobs and resume interrupted ones, launchers."""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
import yaml
from hydra import compose, initialize_config_dir

from recipelab.records.folder import CONF_DIR
from recipelab.records.wandb_file import read_run, run_files
from tests.conftest import train_cli

SMALL = ["data.train_size=300", "data.val_size=300", "trainer.limit_test_batches=2"]
# three seeds; seed 3's weights turn NaN before its first step
DIVERGING = [
    "-m",
    *SMALL,
    "seed=1,2,3",
    "+callbacks.diverge._target_=tests.helpers.DivergeAtSeed",
    "+callbacks.diverge.run_seed=${seed}",
    "+callbacks.diverge.diverge_seed=3",
]


def wandb_runs(job_dir):
    return [read_run(p) for p in run_files(job_dir)]


@pytest.fixture(scope="module")
def diverging_sweep(tmp_path_factory):
    run = train_cli(tmp_path_factory.mktemp("sweep"), *DIVERGING)
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    return run


def test_every_job_has_its_folder_record_and_wandb_run_in_one_group(diverging_sweep):
    dirs = diverging_sweep.run_dirs
    assert [d.name for d in dirs] == ["0", "1", "2"] and len({d.parent for d in dirs}) == 1
    records = [diverging_sweep.metrics(d) for d in dirs]
    assert [r["seed"] for r in records] == [1, 2, 3]
    runs = [wandb_runs(d) for d in dirs]
    assert all(len(r) == 1 for r in runs)  # wandb.finish between jobs: one run each, none shared
    runs = [r[0] for r in runs]
    sweep = dirs[0].parent
    assert {r.group for r in runs} == {f"{sweep.parent.name}_{sweep.name}"}
    assert all(r.job_type == "train" for r in runs)
    for run, record in zip(runs, records, strict=True):
        assert f"seed:{record['seed']}" in run.tags and "optimizer:nesterov" in run.tags
        assert run.config["seed"] == record["seed"] and run.config["choices"] == record["groups"]


def test_a_diverged_job_is_recorded_and_the_sweep_goes_on(diverging_sweep):
    dirs = diverging_sweep.run_dirs
    statuses = [diverging_sweep.metrics(d)["status"] for d in dirs]
    assert statuses == ["completed", "completed", "diverged"]
    assert all(0 < diverging_sweep.metrics(d)["metrics"]["test/acc"] <= 1 for d in dirs[:2])
    (diverged,) = wandb_runs(dirs[2])
    assert diverged.exit_code == 1 and diverged.summary["status"] == "diverged"
    assert wandb_runs(dirs[0])[0].exit_code == 0
    assert "3 jobs, 2 completed, 0 failed, 1 diverged" in diverging_sweep.proc.stdout
    summary = json.loads((dirs[0].parent / "sweep.json").read_text())
    assert summary["jobs"] == {"0": "completed", "1": "completed", "2": "diverged"}


def test_rerun_into_its_folder_skips_finished_jobs_and_resumes_interrupted_ones(diverging_sweep, tmp_path):
    sweep = shutil.copytree(diverging_sweep.run_dirs[0].parent, tmp_path / "sweep")
    before = {d: (sweep / d / "metrics.json").read_bytes() for d in ("0", "2")}
    interrupted = json.loads((sweep / "1" / "metrics.json").read_text())
    (sweep / "1" / "metrics.json").unlink()  # killed after its last checkpoint, before its record

    run = train_cli(diverging_sweep.log_dir, *DIVERGING, f"hydra.sweep.dir={sweep}")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert "job 0: completed in an earlier run of this sweep, skipped" in run.proc.stdout
    assert "job 2: diverged in an earlier run of this sweep, skipped" in run.proc.stdout
    assert "job 1: resuming from" in run.proc.stdout
    for d, data in before.items():  # skipped: record untouched, no second W&B run
        assert (sweep / d / "metrics.json").read_bytes() == data and len(wandb_runs(sweep / d)) == 1
    resumed = json.loads((sweep / "1" / "metrics.json").read_text())
    assert resumed["status"] == "completed" and resumed["steps"] == interrupted["steps"] == 3
    first, second = wandb_runs(sweep / "1")
    assert len({p.name for p in run_files(sweep / "1")}) == 1  # same run id
    assert any("val/acc" in h for h in first.history)
    assert not any("val/acc" in h for h in second.history)  # nothing left to train: it only tested
    assert "3 jobs, 2 completed, 0 failed, 1 diverged" in run.proc.stdout


@pytest.mark.slow  # a fresh interpreter per job: ~50 s here
def test_submitit_local_launcher_runs_a_job(tmp_path):
    run = train_cli(tmp_path, "-m", "launcher=submitit_local", *SMALL, "seed=5")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    job = run.run_dir
    assert run.metrics(job)["status"] == "completed" and run.metrics(job)["seed"] == 5
    assert list(job.parent.glob(".submitit/*/*_result.pkl"))  # it ran as a submitit job
    assert "1 jobs, 1 completed" in run.proc.stdout


def compose_sweep_dir(overrides=()) -> str:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        return cfg.hydra.sweep.dir


def test_sweeps_started_in_the_same_second_get_distinct_folders():
    assert compose_sweep_dir() != compose_sweep_dir()  # folder times carry microseconds


@pytest.mark.parametrize(("n_jobs", "threads"), [(2, 4), (4, 2), (-1, 1)])
def test_joblib_gives_each_job_a_share_of_the_cores(monkeypatch, n_jobs, threads):
    from hydra.core.hydra_config import HydraConfig

    from recipelab.run import sweep

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        overrides = ["launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]
        HydraConfig.instance().set_config(compose("train", overrides=overrides, return_hydra_config=True))
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    try:
        assert sweep.thread_budget() == threads  # 8 cores shared by the jobs that run at once
    finally:
        HydraConfig.instance().cfg = None


def test_report_on_the_sweep_matches_its_records_and_logs_a_wandb_report_run(diverging_sweep, tmp_path):
    import subprocess
    import sys

    import numpy as np

    sweep = shutil.copytree(diverging_sweep.run_dirs[0].parent, tmp_path / "sweep")
    proc = subprocess.run(
        [sys.executable, "-m", "recipelab.report", str(sweep)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with (sweep / "report.csv").open() as f:
        (row,) = list(csv.DictReader(f))  # only the seed varies: one variant
    accs = [json.loads((sweep / d / "metrics.json").read_text())["metrics"]["test/acc"] for d in ("0", "1")]
    assert (row["n"], row["completed"], row["failed"], row["diverged"]) == ("3", "2", "0", "1")
    assert float(row["test/acc mean"]) == pytest.approx(np.mean(accs))
    assert float(row["test/acc std"]) == pytest.approx(np.std(accs, ddof=1))
    assert "**DIVERGED**" in (sweep / "report.md").read_text()
    (path,) = run_files(sweep)
    run = read_run(path)
    assert run.job_type == "report" and run.group == wandb_runs(sweep / "0")[0].group
    logged = {k: v for h in run.history for k, v in h.items()}
    assert logged["report/_type"] == "table-file" and logged["report/nrows"] == 1
    assert logged["plots/accuracy/_type"] == logged["plots/val_curves/_type"] == "image-file"


@pytest.mark.slow
def test_optuna_search_returns_the_best_val_acc_of_its_trials(tmp_path):
    run = train_cli(tmp_path, "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *SMALL, "logger=csv")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    sweep = run.run_dirs[0].parent
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = [run.metrics(d) for d in run.run_dirs]
    assert len(trials) == 2 and results["best_value"] == max(t["metrics"]["val/acc"] for t in trials)
    best = next(t for t in trials if t["metrics"]["val/acc"] == results["best_value"])
    assert f"optimizer.lr={results['best_params']['optimizer.lr']}" in best["overrides"]


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_with_a_thread_budget_each(tmp_path):
    run = train_cli(tmp_path, "-m", "launcher=joblib", *SMALL, "seed=1,2", "logger=csv")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert [run.metrics(d)["status"] for d in run.run_dirs] == ["completed", "completed"]
    budget = max((os.cpu_count() or 1) // 2, 1)
    assert f"job 0: {budget} threads" in run.proc.stdout + run.proc.stderr


def test_rerun_with_other_overrides_neither_resumes_nor_overwrites_a_job(diverging_sweep, tmp_path):
    sweep = shutil.copytree(diverging_sweep.run_dirs[0].parent, tmp_path / "sweep")
    kept = {p: p.read_bytes() for p in (sweep / "1").rglob("*") if p.is_file()}
    other = [o if o != "seed=1,2,3" else "seed=1,5" for o in DIVERGING]  # job 1 asks seed 5, holds seed 2
    run = train_cli(diverging_sweep.log_dir, *other, f"hydra.sweep.dir={sweep}")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    (line,) = [x for x in run.proc.stderr.splitlines() if x.startswith("error: job 1:")]
    assert "seed=2" in line and "seed=5" in line and "neither resumed nor overwritten" in line
    now = {p: p.read_bytes() for p in (sweep / "1").rglob("*") if p.is_file()}
    assert now == kept  # every file of the other recipe's job as it was (its .hydra/ put back)
    assert "job 0: completed in an earlier run of this sweep, skipped" in run.proc.stdout
    assert "3 jobs, 1 completed, 0 failed, 1 diverged, 1 refused" in run.proc.stdout
    summary = json.loads((sweep / "sweep.json").read_text())
    assert summary["jobs"]["1"] == "refused" and summary["refused"] == 1
    assert not list(sweep.glob("*/.hydra-previous"))


def test_a_job_that_raises_is_failed_and_the_sweep_goes_on(tmp_path):
    bug = [
        "+callbacks.bug._target_=tests.helpers.RaiseAtSeed",
        "+callbacks.bug.run_seed=${seed}",
        "+callbacks.bug.at_seed=1",
    ]
    run = train_cli(tmp_path, "-m", *SMALL, "seed=1,2", *bug, "logger=csv")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert [run.metrics(d)["status"] for d in run.run_dirs] == ["failed", "completed"]
    assert "RuntimeError: a bug in this job" in run.proc.stderr
    assert "RuntimeError: a bug in this job" in (run.run_dirs[0] / "train.log").read_text()  # README
    assert "2 jobs, 1 completed, 1 failed, 0 diverged" in run.proc.stdout


def test_sigint_stops_the_sweep_and_a_rerun_resumes_the_job(tmp_path):
    stop = [
        "+callbacks.sig._target_=tests.helpers.SignalAtStep",
        "+callbacks.sig.step=1",
        "+callbacks.sig.signal=SIGINT",
        "+callbacks.sig.run_seed=${seed}",
        "+callbacks.sig.at_seed=1",
    ]
    sweep = tmp_path / "sweep"
    args = ["-m", *SMALL, "data.batch_size=100", "seed=1,2", *stop, "logger=csv", f"hydra.sweep.dir={sweep}"]
    run = train_cli(tmp_path, *args)
    assert run.proc.returncode == 130
    assert run.metrics(sweep / "0")["status"] == "interrupted" and not (sweep / "1").exists()
    again = train_cli(tmp_path, *args)  # the same command: its step 1 lies behind the resumed job
    assert again.proc.returncode == 0, again.proc.stderr[-3000:]
    assert "job 0: resuming from" in again.proc.stdout
    assert [again.metrics(sweep / d)["status"] for d in ("0", "1")] == ["completed", "completed"]


@pytest.mark.slow
def test_an_optuna_trial_is_scored_by_the_mean_of_its_seeds(tmp_path):
    run = train_cli(
        tmp_path, "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1", "seeds_per_trial=2", "seed=7",
        *SMALL, "logger=csv",
    )  # fmt: skip
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    (trial,) = run.run_dirs
    record = run.metrics(trial)
    seeds = [json.loads((trial / f"seed_{s}" / "metrics.json").read_text()) for s in (7, 8)]
    assert record["seeds"] == [7, 8] and [s["seed"] for s in seeds] == [7, 8]
    assert record["metrics"]["val/acc"] == pytest.approx(sum(s["metrics"]["val/acc"] for s in seeds) / 2)
    results = yaml.safe_load((trial.parent / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(record["metrics"]["val/acc"])
