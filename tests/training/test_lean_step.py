"""The lean step (``lean_step=true``, Lightning's manual optimization) against Lightning's automatic loop
(``lean_step=false``): the same weights, learning rates, steps and validations, recipe by recipe."""

import lightning as L
import pytest
import torch

from recipelab.build import build_run
from tests.training.composed import compose_train

TINY = [
    "logger=none",
    "trainer=quiet",
    "model=mlp",
    "model.hidden=[16]",
    "data.train_size=300",
    "data.val_size=100",
    "data.batch_size=50",
    "trainer.limit_test_batches=1",
    "callbacks.step_checkpoint=null",
]


class Rates(L.Callback):
    """Every param group's lr after every batch, and the global step it was read at."""

    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append((trainer.global_step, [g["lr"] for g in trainer.optimizers[0].param_groups]))


def fit(tmp_path, *overrides, ckpt_path=None):
    cfg = compose_train(*TINY, f"paths.output_dir={tmp_path}", *overrides)
    run = build_run(cfg)
    run.trainer.callbacks.append(rates := Rates())
    run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=ckpt_path)
    return run, rates.seen


RECIPES = {
    "onecycle+clip-norm": ["trainer.max_epochs=3", "trainer.gradient_clip_val=0.05"],
    "clip-value": [
        "trainer.max_epochs=2",
        "trainer.gradient_clip_val=0.01",
        "+trainer.gradient_clip_algorithm=value",
    ],
    "step-per-epoch": [
        "scheduler=step",
        "scheduler.interval=epoch",
        "scheduler.build.step_epochs=1",
        "trainer.max_epochs=3",
    ],
    "cosine-every-2": ["scheduler=cosine", "scheduler.frequency=2", "trainer.max_epochs=2"],
    "plateau": [
        "scheduler=plateau",
        "scheduler.build.patience=0",
        "scheduler.build.threshold=0.5",
        "trainer.max_epochs=3",
    ],
    "lbfgs": ["optimizer=lbfgs", "scheduler=none", "trainer.max_epochs=1"],
    "swa": ["callbacks=swa", "trainer.max_epochs=4"],
}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_the_lean_step_trains_as_lightnings_automatic_loop(tmp_path, recipe):
    lean, lean_rates = fit(tmp_path / "lean", *RECIPES[recipe])
    auto, auto_rates = fit(tmp_path / "auto", *RECIPES[recipe], "lean_step=false")
    assert not lean.module.automatic_optimization and auto.module.automatic_optimization
    assert lean.trainer.gradient_clip_val is None  # moved into the module (Lightning refuses it otherwise)
    if recipe == "swa":
        # Lightning's loop counts one step in SWA's batch-norm epoch, where no weight moves (both end at the
        # average): its last batch ends an "accumulation" with the backward skipped. 4 epochs of 6 batches.
        assert lean.trainer.global_step == 24 and auto.trainer.global_step == 25
        auto_rates = [(step - (epoch_batch == 29), r) for epoch_batch, (step, r) in enumerate(auto_rates)]
    else:
        assert lean.trainer.global_step == auto.trainer.global_step > 0
    assert lean_rates == auto_rates
    for name, value in auto.module.state_dict().items():
        torch.testing.assert_close(lean.module.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert lean.trainer.callback_metrics["val/loss"] == auto.trainer.callback_metrics["val/loss"]
    if recipe == "plateau":  # the schedule did act: the rate fell after a validation
        assert len({tuple(r) for _, r in lean_rates}) > 1
    if recipe.startswith("onecycle"):  # the clipping did act: without it the weights differ
        unclipped, _ = fit(tmp_path / "unclipped", "trainer.max_epochs=3")
        weights = unclipped.module.state_dict()
        assert any(not torch.equal(weights[k], v) for k, v in lean.module.state_dict().items())


def test_gradient_accumulation_keeps_lightnings_automatic_loop(tmp_path):
    run, rates = fit(tmp_path, "trainer.max_epochs=1", "trainer.accumulate_grad_batches=2")
    assert run.module.automatic_optimization and run.trainer.global_step == 3  # 6 batches, 2 a step


@pytest.mark.parametrize("first, then", [("false", "true"), ("true", "false")])
def test_a_checkpoint_of_one_loop_resumes_on_the_other_at_its_step(tmp_path, first, then):
    """A run from before the lean step (or resumed with it switched) continues its step count."""
    fit(tmp_path, "trainer.max_epochs=1", f"lean_step={first}")
    last = tmp_path / "checkpoints" / "last.ckpt"
    resumed, rates = fit(tmp_path, "trainer.max_epochs=2", f"lean_step={then}", ckpt_path=str(last))
    assert resumed.trainer.global_step == 12 and [step for step, _ in rates] == list(range(7, 13))
