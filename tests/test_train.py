"""End to end: `python -m recipelab.train` for one epoch, and what its run folder holds."""

import subprocess
from pathlib import Path

import pytest
import torch

from recipelab.records.wandb_file import read_run, run_files
from tests.conftest import ROOT, printed_numbers


def _git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_one_epoch_run_writes_metrics_and_checkpoints(one_epoch_run):
    m = one_epoch_run.metrics()
    assert m["status"] == "completed" and m["seed"] == 42 and m["epochs"] == 1
    assert m["steps"] == 20  # 2000 / 100 optimizer steps
    assert m["groups"]["optimizer"] == "nesterov" and m["groups"]["normalization"] == "batchnorm"
    assert 0.3 < m["metrics"]["test/acc"] <= 1 and m["metrics"]["test/nll"] > 0
    assert m["wall_time_s"] > 0
    ckpt = one_epoch_run.run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True, map_location="cpu")  # plain containers only
    assert state["global_step"] == 20
    assert state["hyper_parameters"]["config"]["optimizer"]["lr"] == 0.1
    assert (one_epoch_run.run_dir / ".hydra" / "config.yaml").is_file()
    # the last epoch's training metrics: sparsity of the weights (ndim > 1) in last.ckpt, counted here
    weights = [w for k, w in state["state_dict"].items() if w.ndim > 1]
    small = sum(int((w.abs() < 1e-3).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert m["metrics"]["last_train/sparsity"] == pytest.approx(small, abs=1e-6)


def test_the_run_folder_holds_what_the_readme_lists(one_epoch_run):
    """The README's run folder: train.log with the run's own lines, the best checkpoint by val/acc beside
    last.ckpt, last_val/* and the provenance of the code, packages and device in metrics.json."""
    run_dir, m = one_epoch_run.run_dir, one_epoch_run.metrics()
    assert "iterations per epoch: 20 batches" in (run_dir / "train.log").read_text()
    (best,) = (run_dir / "checkpoints").glob("best-epoch*.ckpt")
    assert best.samefile(m["best_checkpoint"])
    assert m["metrics"]["last_val/acc"] == m["history"][-1]["val/acc"]  # one epoch: the last is the best
    versions = m["provenance"]["versions"]
    assert set(versions) == {
        "torch",
        "lightning",
        "hydra-core",
        "recipelab",
    } and torch.__version__.startswith(versions["torch"])
    assert m["provenance"]["device"]
    # the code's commit and whether tracked files differ from it (`git diff --quiet HEAD` exits 1), asked here
    head, diff = _git("rev-parse", "HEAD"), _git("diff", "--quiet", "HEAD")
    in_git = head.returncode == 0 and diff.returncode in (0, 1)
    assert m["provenance"]["git_commit"] == (head.stdout.strip() if in_git else None)
    assert m["provenance"]["git_dirty"] == (diff.returncode == 1 if in_git else None)


def test_the_run_ends_with_what_it_found(one_epoch_run):
    """stdout and train.log end with the status, the test scores and epoch of the tested checkpoint, the
    time, the run folder and the next commands: the numbers of the run's metrics.json."""
    m, run_dir = one_epoch_run.metrics(), one_epoch_run.run_dir
    tested = Path(m["best_checkpoint"]).relative_to(run_dir)
    for text in (one_epoch_run.proc.stdout, (run_dir / "train.log").read_text()):
        found, time, folder, evaluate, sync = text.splitlines()[-5:]
        assert "completed: test acc" in found
        scores = {label: m["metrics"][f"test/{label.lower()}"] for label in ("acc", "NLL", "ECE")}
        assert printed_numbers(found) == pytest.approx(scores, abs=5e-5)
        assert found.endswith(f"(best epoch {m['tested_epoch']} of {m['epochs']}, counted from 0: {tested})")
        assert time == f"time: {m['train_time_s']:.1f} s training, {m['wall_time_s']:.1f} s in all"
        assert folder == f"run folder: {run_dir}"
        assert evaluate.startswith(f"next: make evaluate CKPT={run_dir} ")
        assert sync.split()[:2] == ["make", "sync"]  # its W&B run is offline
    assert m["tested_epoch"] == max(m["history"], key=lambda row: row["val/acc"])["epoch"]


def test_wandb_offline_run_holds_identity_history_and_config(one_epoch_run):
    (path,) = run_files(one_epoch_run.run_dir)
    run = read_run(path)
    m = one_epoch_run.metrics()
    assert run.group == "default" and run.job_type == "train" and run.exit_code == 0
    assert run.project == "recipelab"
    assert {"optimizer:nesterov", "scheduler:onecycle", "normalization:batchnorm", "seed:42"} <= set(run.tags)
    assert run.config["choices"]["optimizer"] == "nesterov" and run.config["data"]["train_size"] == 2000
    val = [h["val/acc"] for h in run.history if "val/acc" in h]
    assert len(val) == 1 and 0 <= val[0] <= 1
    assert run.summary["test/acc"] == m["metrics"]["test/acc"]


def test_sweep_gives_each_job_its_folder_and_one_wandb_group(tmp_path):
    from tests.conftest import train_cli

    overrides = ("seed=1,2", "data.train_size=300", "data.val_size=300", "tags=[mine,extra]")
    run = train_cli(tmp_path, "-m", *overrides)
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    dirs = run.run_dirs
    assert len(dirs) == 2 and {run.metrics(d)["seed"] for d in dirs} == {1, 2}
    runs = [read_run(run_files(d)[0]) for d in dirs]
    assert runs[0].group == runs[1].group and runs[0].group.endswith("_default")
    for job in runs:  # the top-level `tags` come besides the automatic group-choice and seed tags
        seed = job.config["seed"]
        assert job.tags[-3:] == [f"seed:{seed}", "mine", "extra"] and "optimizer:nesterov" in job.tags
    assert all(r.job_type == "train" for r in runs)
    # it ends with a table of its jobs, their numbers from their metrics.json, and the report to make
    sweep = dirs[0].parent
    counts, header, *rows, report = run.proc.stdout.splitlines()[-5:]
    assert counts == f"sweep {sweep}: 2 jobs, 2 completed, 0 failed, 0 diverged"
    assert header.split() == ["job", "status", "test", "acc", "overrides"]
    for row, job in zip(rows, dirs, strict=True):
        name, status, acc, overrides = row.split()
        m = run.metrics(job)
        assert (name, status, overrides) == (job.name, m["status"], f"seed={m['seed']}")
        assert float(acc) == pytest.approx(m["metrics"]["test/acc"], abs=5e-5)
    assert report == f"next: make report SWEEP={sweep}"


def test_bad_data_root_fails_fast_with_exit_2(tmp_path, monkeypatch):
    from tests.conftest import train_cli

    (tmp_path / "empty").mkdir()  # a data.root that does not exist is refused earlier, by the config check
    run = train_cli(
        tmp_path,
        f"data.root={tmp_path / 'empty'}",
        "data.dataset.download=false",
        env={"RECIPELAB_DEBIAN_DIR": str(tmp_path / "none")},
    )
    assert run.proc.returncode == 2
    assert run.proc.stderr.strip().splitlines()[-1].startswith("error: Fashion-MNIST not found")


def test_step_values_are_logged_on_the_steps_the_loggers_write(tmp_path):
    from tests.conftest import train_cli

    # 800 images / 100 = 8 steps an epoch, 2 epochs; Lightning writes after every 3rd step
    # with a penalty (l2): train/penalty_step and train/penalty_epoch are logged too
    steps_2_epochs = ("data.train_size=800", "trainer.max_epochs=2", "trainer.log_every_n_steps=3")
    run = train_cli(tmp_path, *steps_2_epochs, "regularization.l2=1e-4")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    history = read_run(run_files(run.run_dir)[0]).history

    def steps(key):
        return [h["trainer/global_step"] for h in history if key in h]

    assert steps("train/loss_step") == [2, 5, 8, 11, 14]
    assert steps("lr/decay") == steps("lr/no_decay") == [2, 5, 8, 11, 14]  # LearningRateMonitor's steps
    assert steps("train/penalty_step") == [2, 5, 8, 11, 14]
    assert len(steps("train/loss_epoch")) == len(steps("train/acc")) == len(steps("train/penalty_epoch")) == 2


def test_epoch_loss_is_the_mean_of_the_step_losses(tmp_path):
    from tests.conftest import train_cli

    run = train_cli(tmp_path, "data.train_size=800", "trainer.log_every_n_steps=1")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    history = read_run(run_files(run.run_dir)[0]).history
    losses = [h["train/loss_step"] for h in history if "train/loss_step" in h]
    (epoch_loss,) = [h["train/loss_epoch"] for h in history if "train/loss_epoch" in h]
    assert len(losses) == 8  # equal batches of 100: the epoch value is the plain mean
    assert epoch_loss == pytest.approx(sum(losses) / len(losses), rel=1e-5)
