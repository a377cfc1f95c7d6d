"""``lean_step=true``: the optimization step under Lightning's manual optimization, doing what its automatic
loop does with less Python a step.

Lightning's automatic loop builds a closure object, its result, and zero-grad and backward functions, and
runs its progress bookkeeping, on every step: ~280 of the ~1,750 Python calls of a tiny network's step in
this template (docs/performance.md has the time it saves). What it does, done the same way here
(``tests/training/test_lean_step.py`` compares the two loops' weights, rates and steps):

- the closure: the loss (``training_loss``), ``zero_grad``, then the backward through the precision
  plugin (``manual_backward``: the same ``on_before_backward``/``on_after_backward`` hooks and scaler),
  given to ``optimizer.step``, which L-BFGS calls as often as it needs;
- gradient clipping: ``trainer.gradient_clip_val`` moves to the module (Lightning refuses it under manual
  optimization) and clips in ``on_before_optimizer_step``: after the callbacks' hooks and the scaler's
  unscale, where the automatic loop clips;
- the schedulers, which Lightning steps only for the automatic loop: interval ``step`` after each
  optimizer step, every ``frequency`` batches; interval ``epoch`` after the epoch's last batch, before
  validation; a plateau schedule at the epoch's end, after validation, with its monitored value;
- SWA's batch-norm epoch (Lightning's ``fit_loop._skip_backward``): forward passes only.

Kept on the automatic loop (``reason``): gradient accumulation (Lightning refuses it under manual
optimization) and a plateau schedule at interval ``step`` (the automatic loop steps it after each batch's
validation); the learning-rate finder runs its own schedule on it too.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from omegaconf import DictConfig

from recipelab.errors import UserError

log = logging.getLogger(__name__)
AUTOMATIC, MANUAL = "epoch_loop.automatic_optimization.optim_progress", "epoch_loop.manual_optimization"


def reason(cfg: DictConfig) -> str | None:
    """Why a run keeps Lightning's automatic loop (None: it takes the lean step)."""
    if not cfg.get("lean_step", True):
        return "lean_step=false"
    if cfg.trainer.get("accumulate_grad_batches", 1) > 1:
        return "trainer.accumulate_grad_batches > 1"
    if cfg.scheduler.get("monitor") and cfg.scheduler.get("interval", "step") == "step":
        return "a plateau schedule at interval step"
    return None


def make_lean(module: LeanStep, cfg: DictConfig) -> dict:
    """Give ``module`` the lean step unless ``reason`` keeps the automatic loop; returns the Trainer
    arguments that go with it (the clipping moved to the module)."""
    why = reason(cfg)
    if why is not None:
        log.info("the optimization step: Lightning's automatic loop (%s)", why)
        return {}
    trainer = cfg.trainer
    module.make_lean(
        trainer.get("gradient_clip_val"), trainer.get("gradient_clip_algorithm"), cfg.scheduler.get("monitor")
    )
    return {"gradient_clip_val": None}


class LeanStep(L.LightningModule):
    """The step of ``RecipeModule`` and ``FusedModule``: their ``training_loss`` under Lightning's
    automatic loop, or under the lean step once ``make_lean`` was called."""

    clip: tuple[float, str] | None = None  # gradient_clip_val and _algorithm of the lean step
    monitor: str | None = None  # the plateau schedule's metric (Lightning drops it under manual optimization)

    def training_loss(self, batch, batch_idx) -> torch.Tensor:
        raise NotImplementedError

    def make_lean(
        self, clip_val: float | None = None, clip_algorithm: str | None = None, monitor=None
    ) -> None:
        self.automatic_optimization = False
        self.clip = (clip_val, clip_algorithm or "norm") if clip_val else None
        self.monitor = monitor

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            return self.training_loss(batch, batch_idx)
        # SWA's batch-norm epoch: the forward passes refill the statistics; no backward, no step
        if self.trainer.fit_loop._skip_backward:  # Lightning's flag; it has no public one
            return self.training_loss(batch, batch_idx)
        optimizer = self.optimizers()

        def closure() -> torch.Tensor:
            loss = self.training_loss(batch, batch_idx)
            optimizer.zero_grad()
            self.manual_backward(loss)
            return loss

        loss = optimizer.step(closure=closure)
        self.tick("step", batch_idx)
        if batch_idx + 1 == self.trainer.num_training_batches:
            self.tick("epoch", self.current_epoch)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.clip is not None:
            self.clip_gradients(optimizer, self.clip[0], self.clip[1])

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            self.tick("epoch", self.current_epoch, plateau=True)

    def tick(self, interval: str, index: int, plateau: bool = False) -> None:
        """Step the schedulers of ``interval`` (plateau ones or the others) whose ``frequency`` divides
        ``index + 1`` (the batch's index in its epoch, or the epoch's), as Lightning's automatic loop does."""
        for config in self.trainer.lr_scheduler_configs:
            on_plateau = isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            if config.interval != interval or on_plateau != plateau or (index + 1) % config.frequency:
                continue
            value = self.trainer.callback_metrics.get(self.monitor) if plateau else None
            if plateau and value is None:
                known = ", ".join(sorted(self.trainer.callback_metrics)) or "none"
                raise UserError(f"scheduler.monitor={self.monitor} was not logged (logged: {known})")
            self.lr_scheduler_step(config.scheduler, value)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint of the other loop (a run from before ``lean_step``, or resumed with it switched):
        its count of optimizer steps (``global_step``) is given to the loop this run uses."""
        loop = checkpoint.get("loops", {}).get("fit_loop", {})
        automatic, manual = loop.get(AUTOMATIC), loop.get(f"{MANUAL}.optim_step_progress")
        if automatic is None or manual is None:
            return
        steps = automatic["optimizer"]["step"]
        source, target = (manual, steps) if self.automatic_optimization else (steps, manual)
        if not target["total"]["completed"]:
            target.update({key: dict(source[key]) for key in ("total", "current")})
