"""A NaN or infinite loss ends the job at once: status diverged, W&B run failed, exit 3; sweeps go on."""

import math

import pytest
import torch

from recipelab.errors import Diverged
from recipelab.run.wandb_file import read_run, run_files
from recipelab.training.reliability import StopOnDivergence
from tests.conftest import train_cli

HUGE_LR = ["optimizer.lr=1e30", "scheduler=none", "trainer.precision=32-true", "trainer.max_epochs=3"]


def test_huge_learning_rate_stops_the_run_before_the_bad_step(tmp_path):
    run = train_cli(tmp_path, *HUGE_LR)
    assert run.proc.returncode == 3, run.proc.stderr[-3000:]
    line = run.proc.stderr.strip().splitlines()[-1]
    m = run.metrics()
    step = m["diverged"]["step"]
    assert (
        line
        == f"error: training diverged at step {step} (epoch 0) with lr=1e+30: loss is {m['diverged']['loss']}"
    )
    assert m["status"] == "diverged" and m["diverged"]["lr"] == 1e30
    assert not math.isfinite(float(m["diverged"]["loss"]))
    assert m["steps"] == step < 20  # stopped before that step: no optimizer step on a non-finite loss
    assert m["metrics"] == {}
    (wandb,) = run_files(run.run_dir)
    assert read_run(wandb).exit_code == 1  # W&B shows the run as failed


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_raises_with_step_and_lr(loss):
    class Trainer:
        global_step, current_epoch = 7, 2
        optimizers = [torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.25)]

    with pytest.raises(Diverged, match=r"step 7 \(epoch 2\) with lr=0.25"):
        StopOnDivergence().on_before_backward(Trainer(), None, torch.tensor(loss))
    StopOnDivergence().on_before_backward(Trainer(), None, torch.tensor(1e30))  # large but finite: goes on


@pytest.mark.slow
def test_diverged_job_does_not_stop_the_sweep(tmp_path):
    run = train_cli(tmp_path, "-m", "optimizer.lr=1e30,0.05", *HUGE_LR[1:])
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert sorted(run.metrics(d)["status"] for d in run.run_dirs) == ["completed", "diverged"]
