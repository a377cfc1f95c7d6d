"""A NaN or infinite loss ends the job (checked every log_every_n_steps steps and before validation and any
checkpoint, so no bad step is saved): status diverged, W&B run failed, exit 3; sweeps go on."""

import math

import pytest
import torch

from recipelab.errors import Diverged, UserError
from recipelab.records.wandb_file import read_run, run_files
from recipelab.training.reliability import StopOnDivergence
from tests.conftest import train_cli

HUGE_LR = ["optimizer.lr=1e30", "scheduler=none", "trainer.precision=32-true", "trainer.max_epochs=3"]


def test_huge_learning_rate_stops_the_run_and_saves_no_bad_step(tmp_path):
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
    assert (run.run_dir / "train.log").read_text().rstrip().endswith(line)  # the log ends the same way
    assert not math.isfinite(float(m["diverged"]["loss"]))
    # the host reads the flag every log_every_n_steps (50) steps and before validation (20 steps here)
    assert step <= m["steps"] <= 20
    assert m["metrics"] == {}
    for path in (run.run_dir / "checkpoints").glob("*.ckpt"):  # nothing saved after the bad step
        weights = torch.load(path, weights_only=True)["state_dict"].values()
        assert all(torch.isfinite(w).all() for w in weights if w.is_floating_point())
    (wandb,) = run_files(run.run_dir)
    assert read_run(wandb).exit_code == 1  # W&B shows the run as failed


def test_a_run_that_raises_is_failed_with_its_traceback_on_the_terminal_and_in_its_log(tmp_path):
    bug = [
        "+callbacks.bug._target_=tests.helpers.RaiseAtSeed",
        "+callbacks.bug.run_seed=1",
        "+callbacks.bug.at_seed=1",
    ]
    run = train_cli(tmp_path, "seed=1", "logger=csv", *bug)
    assert run.proc.returncode == 1 and run.metrics()["status"] == "failed"
    assert "Traceback" in run.proc.stderr and "RuntimeError: a bug in this job\n" in run.proc.stderr
    log = (run.run_dir / "train.log").read_text()
    assert "Traceback" in log and log.rstrip().endswith("RuntimeError: a bug in this job"), log[-2000:]


class _Trainer:
    global_step, current_epoch, world_size = 3, 0, 1
    optimizers = [torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)]


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_raises_at_the_check_with_its_own_step_and_lr(loss):
    stop, trainer = StopOnDivergence(), _Trainer()
    trainer.optimizers = [torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.25)]
    for step in range(10):
        trainer.global_step, trainer.current_epoch = step, 2
        stop.on_train_batch_start(trainer, None, None, step)
        stop.on_before_backward(trainer, None, torch.tensor(loss if step in (7, 8) else 1.0))
        if step < 7:
            stop.check(trainer)  # nothing bad yet
    with pytest.raises(Diverged, match=r"step 7 \(epoch 2\) with lr=0.25"):  # the first bad step, not 9
        stop.check(trainer)


def test_large_finite_loss_goes_on():
    stop = StopOnDivergence()
    stop.on_before_backward(_Trainer(), None, torch.tensor(1e30))
    stop.check(_Trainer())
    with pytest.raises(UserError, match="check_every=0"):
        StopOnDivergence(check_every=0)


@pytest.mark.slow
def test_diverged_job_does_not_stop_the_sweep(tmp_path):
    run = train_cli(tmp_path, "-m", "optimizer.lr=1e30,0.05", *HUGE_LR[1:])
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert sorted(run.metrics(d)["status"] for d in run.run_dirs) == ["completed", "diverged"]


def test_only_the_first_loss_of_each_batch_counts():
    """L-BFGS evaluates trial points in its line search (rejected ones may be non-finite): only the loss
    at the batch's starting point decides divergence."""
    stop, trainer = StopOnDivergence(), _Trainer()
    stop.on_train_batch_start(trainer, None, None, 0)
    stop.on_before_backward(trainer, None, torch.tensor(1.0))
    stop.on_before_backward(trainer, None, torch.tensor(float("nan")))  # a trial point: not divergence
    stop.check(trainer)
    stop.on_train_batch_start(trainer, None, None, 1)
    stop.on_before_backward(trainer, None, torch.tensor(float("nan")))
    with pytest.raises(Diverged):
        stop.check(trainer)


def test_lbfgs_counts_each_optimizer_step_once_in_the_training_metrics(tmp_path):
    import lightning as L

    from recipelab.build import build_run
    from tests.training.composed import compose_train

    counts = []

    class Count(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):  # before the module logs and resets its sums
            counts.append(tuple(pl_module._train_counts))

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
