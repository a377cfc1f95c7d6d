"""The LightningModule: receives built parts (model, optimizer and scheduler partials) and knows no Hydra."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from recipelab.models.whiten import Whitening
from recipelab.training import compiled
from recipelab.training.lean_step import LeanStep
from recipelab.training.penalties import Regularizer
from recipelab.training.predict import nll, predict_proba

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
log = logging.getLogger(__name__)


class RecipeModule(LeanStep):
    """Classification with a configurable recipe.

    optimizer: partial taking params (a list of param-group dicts from ``param_groups``).
    scheduler: partial taking (optimizer, total_steps=, steps_per_epoch=) in scheduler ticks, or None.
    scheduler_options: Lightning's lr_scheduler dict entries (interval, frequency, monitor).
    regularizer: adds its penalty to the training loss, applies its max-norm after every optimizer step,
        and gives the label smoothing of the training loss.
    config: a plain container saved into checkpoints so any checkpoint can rebuild its own model.
    compile_mode: compile the optimizer's update in this torch.compile mode (``training/compiled.py``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_options: dict | None = None,
        param_groups: Callable[[torch.nn.Module], list[dict]] | None = None,
        regularizer: Regularizer | None = None,
        tta_flip: bool = False,
        tta_shift: int = 0,
        channels_last: bool = False,
        num_classes: int = 10,
        config: dict | None = None,
        compile_mode: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters({"config": config or {}}, logger=False)
        self.model = model
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_options = dict(scheduler_options or {})
        self.param_groups = param_groups
        self.tta_flip, self.tta_shift = tta_flip, tta_shift
        self.regularizer = regularizer
        self.compile_mode = compile_mode  # the update compiled in this torch.compile mode; None: eager
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # The epoch's training loss and accuracy: running sums on the loss's device, added by hand because
        # torchmetrics' two updates cost ~0.18 ms a step on 2 CPU cores (0.3% of the default step) against
        # ~0.03 ms for these. DDP ranks add their sums once, at epoch end.
        self._train_sums: tuple[torch.Tensor, torch.Tensor] | None = None  # batch losses, correct answers
        self._train_counts = [0, 0]  # batches, samples
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_ece = MulticlassCalibrationError(num_classes, n_bins=15, norm="l1")
        self._counted = False  # this batch's training metrics were updated (L-BFGS calls the step often)
        self._fast_forward: int | None = None  # scheduler ticks to replay after a resume that rebuilt it

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning names the hook it is in (``_current_fx_name``) around every hook: ~50 times a training
        # step. nn.Module's __setattr__ looks the name up among parameters, buffers and submodules first
        # (~1-2 µs); a hook's name is a plain attribute, set directly.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=self.memory_format))

    def model_step(self, batch, smoothing: float = 0.0):
        x, y = batch
        logits = self(x)
        return F.cross_entropy(logits, y, label_smoothing=smoothing), logits, y

    def on_fit_start(self) -> None:
        """A whitening first layer is fitted on (the first 5000 of) the training images, before any step;
        a resumed or fine-tuned network keeps its own."""
        for layer in self.model.modules():
            if isinstance(layer, Whitening) and not layer.fitted:
                datamodule = self.trainer.datamodule
                layer.fit(datamodule.prepare(datamodule.splits["train"][0][:5000]).float())

    def on_train_start(self) -> None:
        batches = self.trainer.num_training_batches
        steps = math.ceil(batches / self.trainer.accumulate_grad_batches)
        log.info("iterations per epoch: %d batches, %d optimizer steps", batches, steps)
        for logger in self.loggers:
            logger.log_hyperparams({"iterations_per_epoch": steps, "batches_per_epoch": batches})
        if self._fast_forward:
            scheduler = self.lr_schedulers()
            with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": intended here
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(self._fast_forward):
                    scheduler.step()
            self._fast_forward = None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Extending a run (a larger trainer.max_epochs than the checkpoint's): a schedule whose shape
        depends on the run's length (one-cycle, cosine, ...) is rebuilt for the new length and replayed to
        the checkpoint's step, instead of restored (a restored one-cycle would fail past its old end)."""
        super().on_load_checkpoint(checkpoint)
        saved = (checkpoint.get("hyper_parameters") or {}).get("config", {}).get("trainer", {})
        before, now = saved.get("max_epochs"), self.hparams["config"].get("trainer", {}).get("max_epochs")
        if (
            self.scheduler_factory is None
            or before is None
            or before == now
            or not checkpoint.get("lr_schedulers")
        ):
            return
        if self.scheduler_options.get("monitor"):  # plateau: its state is the metric's history; keep it
            return
        checkpoint["lr_schedulers"] = []
        interval = self.scheduler_options.get("interval", "step")
        ticks = checkpoint["global_step"] if interval == "step" else checkpoint["epoch"]
        self._fast_forward = ticks // self.scheduler_options.get("frequency", 1)
        msg = "resume: trainer.max_epochs %s -> %s: the lr schedule is rebuilt for the new length and "
        log.info(msg + "continues at its tick %d", before, now, self._fast_forward)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self._counted = False

    def training_loss(self, batch, batch_idx):
        smoothing = self.regularizer.label_smoothing if self.regularizer is not None else 0.0
        loss, logits, y = self.model_step(batch, smoothing)
        # A `self.log` call costs ~0.7 ms on 2 CPU cores (1% of a step), so every step only adds to
        # running sums; values are logged on the steps the loggers write (log_every_n_steps) and at epoch
        # end. The learning rate is logged by the LearningRateMonitor callback on those same steps.
        if not self._counted:  # once per batch, however often the optimizer re-evaluates the loss
            self._add_to_epoch(loss.detach(), logits.detach(), y)
            self._counted = True
        if self.logs_this_step():  # not on the progress bar: Lightning would read its value every step
            self.log("train/loss_step", loss.detach())
        if self.regularizer is not None and self.regularizer.has_penalty:  # train/loss_* stay the data loss
            penalty = self.regularizer.penalty(self.model)
            self.log("train/penalty", penalty, on_step=True, on_epoch=True)
            loss = loss + penalty
        return loss

    def logs_this_step(self) -> bool:
        """Whether the loggers write this step: Lightning writes after every log_every_n_steps-th step."""
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def _add_to_epoch(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        if self._train_sums is None:
            self._train_sums = (loss.new_zeros((), dtype=torch.float32), y.new_zeros((), dtype=torch.long))
        loss_sum, correct = self._train_sums
        loss_sum.add_(loss)
        correct.add_((logits.argmax(-1) == y).sum())
        self._train_counts[0] += 1
        self._train_counts[1] += len(y)

    def on_train_epoch_end(self):
        self.log_train_epoch()
        super().on_train_epoch_end()  # the lean step's plateau schedule, after validation

    def log_train_epoch(self) -> None:
        if self._train_sums is not None:  # the mean batch loss and the accuracy over every rank's batches
            loss_sum, correct = self._train_sums
            sums = torch.stack([loss_sum, correct.float(), *loss_sum.new_tensor(self._train_counts)])
            loss_sum, correct, batches, samples = self.trainer.strategy.reduce(sums, reduce_op="sum")
            # the same values on every rank: sync_dist's mean keeps them (and spares Lightning's warning)
            self.log("train/loss_epoch", loss_sum / batches, sync_dist=True)
            self.log("train/acc", correct / samples, sync_dist=True)
            self._train_sums, self._train_counts = None, [0, 0]
        if self.regularizer is not None:
            self.log("train/sparsity", self.regularizer.sparsity(self.model))

    def validation_step(self, batch, batch_idx):
        loss, logits, y = self.model_step(batch)
        self.val_acc(logits, y)
        # under DDP each rank evaluates a shard; sync_dist sums the batch-size-weighted losses exactly
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        probs = predict_proba(self, x, self.tta_flip, self.tta_shift)
        loss = nll(probs, y)
        self.test_acc(probs, y)
        self.test_ece(probs, y)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True)
        self.log("test/nll", loss, on_epoch=True, sync_dist=True)
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/ece", self.test_ece, on_epoch=True)

    def constrain(self) -> None:
        """The max-norm constraint, after every optimizer step."""
        self.regularizer.constrain(self.model)

    def configure_optimizers(self) -> Any:
        params = self.param_groups(self.model) if self.param_groups else self.model.parameters()
        optimizer = self.optimizer_factory(params)
        if self.regularizer is not None and self.regularizer.max_norm is not None:
            optimizer.register_step_post_hook(lambda *_: self.constrain())
        if self.compile_mode is not None:  # before the scheduler, which then counts the compiled steps
            compiled.compile_step(optimizer, self.compile_mode)
        if self.scheduler_factory is None:
            return optimizer
        options = {"interval": "step", "frequency": 1, "name": "lr", **self.scheduler_options}
        if not self.automatic_optimization:  # the lean step reads its monitor itself (Lightning drops it)
            options.pop("monitor", None)
        # the fit's optimizer steps: max_epochs' worth, or trainer.max_steps where that ends the fit first
        fit_steps = self.trainer.estimated_stepping_batches  # (it counts the training batches first)
        per_epoch = math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
        by_step = options["interval"] == "step"
        ticks_per_epoch = max(per_epoch if by_step else 1, 1) // options["frequency"]
        ticks = (fit_steps if by_step else math.ceil(fit_steps / max(per_epoch, 1))) // options["frequency"]
        scheduler = self.scheduler_factory(optimizer, total_steps=ticks, steps_per_epoch=ticks_per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **options}}
