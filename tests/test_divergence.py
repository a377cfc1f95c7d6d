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
        global_step, current_epoch, world_size = 7, 2, 1
        optimizers = [torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.25)]

    with pytest.raises(Diverged, match=r"step 7 \(epoch 2\) with lr=0.25"):
        StopOnDivergence().on_before_backward(Trainer(), None, torch.tensor(loss))
    StopOnDivergence().on_before_backward(Trainer(), None, torch.tensor(1e30))  # large but finite: goes on


@pytest.mark.slow
def test_diverged_job_does_not_stop_the_sweep(tmp_path):
    run = train_cli(tmp_path, "-m", "optimizer.lr=1e30,0.05", *HUGE_LR[1:])
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert sorted(run.metrics(d)["status"] for d in run.run_dirs) == ["completed", "diverged"]


class _Trainer:
    global_step, current_epoch, world_size = 3, 0, 1
    optimizers = [torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)]


def test_only_the_first_loss_of_each_batch_counts():
    """L-BFGS evaluates trial points in its line search (rejected ones may be non-finite): only the loss
    at the batch's starting point decides divergence."""
    stop, trainer = StopOnDivergence(), _Trainer()
    stop.on_train_batch_start(trainer, None, None, 0)
    stop.on_before_backward(trainer, None, torch.tensor(1.0))
    stop.on_before_backward(trainer, None, torch.tensor(float("nan")))  # a trial point: not divergence
    stop.on_train_batch_start(trainer, None, None, 1)
    with pytest.raises(Diverged):
        stop.on_before_backward(trainer, None, torch.tensor(float("nan")))


def test_lbfgs_counts_each_optimizer_step_once_in_the_training_metrics(tmp_path):
    import lightning as L

    from recipelab.build import build_run
    from tests.training.composed import compose_train

    counts = []

    class Count(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):  # before the module logs and resets its sums
            counts.append(
                (int(pl_module.train_loss.weight), int(pl_module.train_acc.tp + pl_module.train_acc.fn))
            )

    cfg = compose_train(
        "optimizer=lbfgs", "scheduler=none", "logger=none", "trainer=quiet", "trainer.max_epochs=1",
        "data.train_size=60", "data.val_size=100", "data.batch_size=20", "trainer.limit_test_batches=1",
    )  # fmt: skip
    cfg.paths.output_dir = str(tmp_path)
    run = build_run(cfg)
    run.trainer.callbacks.append(Count())
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert run.trainer.global_step == 3
    assert counts == [(3, 60)]  # 3 batch losses (not one per line-search evaluation), 60 predictions
