"""Hydra conventions users bring: --config-dir with their own configs, the debug group, --help."""

import csv
import subprocess
import sys

from omegaconf import OmegaConf

from tests.conftest import ROOT, train_cli


def test_config_dir_adds_an_experiment_from_outside_the_repo(tmp_path):
    configs = tmp_path / "my_configs" / "experiment"
    configs.mkdir(parents=True)
    (configs / "mine.yaml").write_text("# @package _global_\nname: from_outside\noptimizer:\n  lr: 0.05\n")
    run = train_cli(tmp_path / "logs", f"--config-dir={tmp_path / 'my_configs'}", "experiment=mine")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert run.metrics()["name"] == "from_outside"
    assert OmegaConf.load(run.run_dir / ".hydra" / "config.yaml").optimizer.lr == 0.05


def test_a_bad_value_in_an_outside_config_is_caught_before_any_folder(tmp_path):
    configs = tmp_path / "my_configs" / "experiment"
    configs.mkdir(parents=True)
    (configs / "bad.yaml").write_text("# @package _global_\noptimizer:\n  lr: -1.0\n")
    run = train_cli(tmp_path / "logs", f"--config-dir={tmp_path / 'my_configs'}", "experiment=bad")
    assert run.proc.returncode == 2
    assert run.proc.stderr.strip().splitlines()[-1] == "error: optimizer.lr=-1.0: must be > 0"
    assert not (tmp_path / "logs").exists()


def test_debug_fdr_runs_one_batch_of_each_and_saves_nothing(tmp_path):
    run = train_cli(tmp_path, "debug=fdr")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    record = run.metrics()
    assert record["status"] == "completed" and record["steps"] == 1
    assert not list(run.run_dir.rglob("*.ckpt"))
    assert not (run.run_dir / "wandb").exists()  # fdr runs without a logger


def test_debug_limit_runs_three_batches_per_epoch(tmp_path):
    run = train_cli(tmp_path, "trainer=quiet", "debug=limit", "logger=csv", quick=False)
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    record = run.metrics()
    assert record["status"] == "completed" and record["epochs"] == 2 and record["steps"] == 6


def test_debug_overfit_drives_the_training_loss_down(tmp_path):
    run = train_cli(tmp_path, "trainer=quiet", "debug=overfit", "logger=csv", quick=False)
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    (log,) = run.run_dir.glob("csv/**/metrics.csv")
    with log.open() as f:
        losses = [float(r["train/loss_epoch"]) for r in csv.DictReader(f) if r.get("train/loss_epoch")]
    assert run.metrics()["steps"] == 40 and len(losses) == 40  # one batch of 64 images per epoch
    assert losses[-1] < 0.1 * losses[0]


def test_debug_profiler_writes_the_time_per_hook(tmp_path):
    run = train_cli(tmp_path, "trainer=quiet", "debug=profiler", "logger=csv", quick=False)
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    report = (run.run_dir / "fit-profile.txt").read_text()
    (row,) = [line for line in report.splitlines() if line.strip().startswith("|  run_training_batch")]
    assert "|  20 " in row.replace("\t", " ")  # 20 training steps, each timed


def test_help_lists_every_group_and_its_options():
    """README: `python -m recipelab.train --help` lists the groups and their options (read from conf/)."""
    out = subprocess.run(
        [sys.executable, "-m", "recipelab.train", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    listed = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and "," in line)
    for group in ("optimizer", "scheduler", "normalization", "regularization", "model", "data"):
        options = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
        assert listed[group].split(", ") == options
