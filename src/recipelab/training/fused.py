"""k seeds of one recipe as one LightningModule (``seeds_per_process``): the copies of a ``SeedStack`` step
together, each on its own batch, each with its own loss, and each is validated and checkpointed as its
separate run would be.

The step's loss is the sum of the copies' own mean losses (plus each copy's penalty): copy i's parameters
appear in its term only, so its gradient is the gradient of its own loss, as in its separate run, and
elementwise optimizers (every one but L-BFGS) update each copy as they would alone. Metrics are logged
per copy, as ``<metric>/copy<i>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from recipelab.errors import Diverged
from recipelab.models.seed_stack import SeedStack
from recipelab.training.module import RecipeModule
from recipelab.training.reliability import StopOnDivergence


def copy_key(metric: str, copy_index: int) -> str:
    """The name copy ``copy_index``'s value of ``metric`` is logged under."""
    return f"{metric}/copy{copy_index}"


def stacked_groups(groups: list[dict], network: nn.Module, stack: SeedStack) -> list[dict]:
    """Param groups built on one copy's ``network`` (the project's rules work on its names and shapes),
    with each parameter replaced by its stacked tensor in ``stack``."""
    names = {id(p): name for name, p in network.named_parameters()}
    return [{**g, "params": [stack.stacked(names[id(p)]) for p in g["params"]]} for g in groups]


class FusedModule(RecipeModule):
    """``model``: a SeedStack; ``param_groups``: a function of the stack returning its param groups (see
    ``stacked_groups``). Other arguments as ``RecipeModule``'s (channels_last is the stack's own)."""

    model: SeedStack

    def __init__(self, model: SeedStack, param_groups: Callable[[SeedStack], list[dict]], **kwargs):
        super().__init__(model=model, param_groups=param_groups, **kwargs)
        self._val_sums: torch.Tensor | None = None  # per copy: losses × batch size, correct answers, images
        self.register_buffer("alive", torch.ones(model.k, dtype=torch.bool))  # copies not diverged
        self.diverged: dict[int, dict] = {}  # copy → the step, epoch, lr and loss where it diverged
        self.stopped: dict[int, dict] = {}  # copy → the epoch and step early stopping ended it at
        self.step_losses: torch.Tensor | None = None  # this step's loss of every copy (CopyDivergence)

    @property
    def k(self) -> int:
        return self.model.k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One batch ``[N, ...]`` through every copy: ``[k, N, classes]``."""
        return self.model(x.expand(self.k, *x.shape))

    def copy_losses(self, logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        """Each copy's mean cross-entropy: logits ``[k, N, classes]``, labels ``[k, N]`` → ``[k]``. One call
        a copy, as its separate run makes it: the mean of one flattened call's per-sample losses sums them
        in another order, and the logged losses differed from the separate run's in the 7th digit."""
        return torch.stack(
            [
                F.cross_entropy(out, labels, label_smoothing=smoothing)
                for out, labels in zip(logits, y, strict=True)
            ]
        )

    def training_loss(self, batch, batch_idx):
        x, y = batch  # [k, N, C, H, W], [k, N]: each copy's own batch
        smoothing = self.regularizer.label_smoothing if self.regularizer is not None else 0.0
        # diverged and stopped copies are not run: their loss is masked or their tensors put back
        logits = self.model(x, idle=frozenset(self.diverged) | frozenset(self.stopped))
        losses = self.copy_losses(logits, y, smoothing)
        if not self._counted:
            self._add_to_epoch(losses.detach(), logits.detach(), y)
            self._counted = True
        if self.logs_this_step():
            for i, loss in enumerate(losses.detach()):
                self.log(copy_key("train/loss_step", i), loss)
        if self.regularizer is not None and self.regularizer.has_penalty:
            penalties = [self.regularizer.penalty(self.model.copy_parameters(i)) for i in range(self.k)]
            for i, penalty in enumerate(penalties):
                self.log(copy_key("train/penalty", i), penalty, on_step=True, on_epoch=True)
            losses = losses + torch.stack(penalties)
        self.step_losses = losses.detach()
        # a diverged copy's term is left out: the step's loss stays finite; no copy's gradient depends on
        # another's term, so the others step exactly as they would without it
        return torch.where(self.alive, losses, torch.zeros_like(losses)).sum()

    def diverge(self, copy_index: int, step: int, epoch: int, lr: float, loss: float, found: tuple) -> None:
        """Copy ``copy_index``'s loss was not finite at ``step``: it is recorded diverged and masked.
        ``found``: the epoch and optimizer step of the check that found it, where its separate run ends."""
        self.alive[copy_index] = False
        self.diverged[copy_index] = {
            "step": step,
            "epoch": epoch,
            "lr": lr,
            "loss": str(loss),
            "found": found,
        }

    def trains(self, copy_index: int, epoch: int) -> bool:
        """Whether copy ``copy_index``'s separate run would still be training in ``epoch``: not diverged,
        not stopped early at an earlier epoch (its state is then saved as after its last epoch)."""
        stop = self.stopped.get(copy_index)
        return copy_index not in self.diverged and (stop is None or epoch <= stop["epoch"])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["diverged_copies"], checkpoint["stopped_copies"] = dict(self.diverged), dict(self.stopped)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.diverged = {int(i): d for i, d in checkpoint.get("diverged_copies", {}).items()}
        self.stopped = {int(i): d for i, d in checkpoint.get("stopped_copies", {}).items()}
        super().on_load_checkpoint(checkpoint)

    def _add_to_epoch(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        if self._train_sums is None:
            self._train_sums = (torch.zeros_like(loss, dtype=torch.float32), y.new_zeros(self.k))
        loss_sum, correct = self._train_sums
        loss_sum.add_(loss)
        correct.add_((logits.argmax(-1) == y).sum(1))
        self._train_counts[0] += 1
        self._train_counts[1] += y.shape[1]

    def log_train_epoch(self) -> None:
        if self._train_sums is not None:
            loss_sum, correct = self._train_sums
            batches, samples = self._train_counts
            for i in range(self.k):
                self.log(copy_key("train/loss_epoch", i), loss_sum[i] / batches)
                self.log(copy_key("train/acc", i), correct[i].float() / samples)
            self._train_sums, self._train_counts = None, [0, 0]
        if self.regularizer is not None:
            for i in range(self.k):
                self.log(
                    copy_key("train/sparsity", i), self.regularizer.sparsity(self.model.copy_parameters(i))
                )

    def constrain(self) -> None:
        for i in range(self.k):
            self.regularizer.constrain(self.model.copy_parameters(i))

    def on_validation_epoch_start(self) -> None:
        self._val_sums = None

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        labels = y.expand(self.k, *y.shape)
        losses = self.copy_losses(logits, labels)
        correct = (logits.argmax(-1) == labels).sum(1).float()
        sums = torch.stack([losses * len(y), correct, torch.full_like(correct, len(y))])
        self._val_sums = sums if self._val_sums is None else self._val_sums + sums

    def on_validation_epoch_end(self) -> None:
        """Each copy's val/loss (the batch-size-weighted mean, as Lightning's epoch mean) and val/acc."""
        if self._val_sums is None:
            return
        losses, correct = self._val_sums[:2] / self._val_sums[2]
        for i in range(self.k):
            self.log(copy_key("val/loss", i), losses[i])
            self.log(copy_key("val/acc", i), correct[i])


class CopyDivergence(StopOnDivergence):
    """``StopOnDivergence`` per copy: each step keeps every copy's loss (``FusedModule.step_losses``); at a
    check, a copy whose loss was NaN or infinite is recorded diverged at its first such step (with that
    step's epoch and lr) and masked, while the others go on. The chunk ends (``Diverged``, at the earliest
    copy's step) only when every copy has diverged."""

    def on_before_backward(self, trainer, pl_module: FusedModule, loss: torch.Tensor) -> None:
        super().on_before_backward(trainer, pl_module, pl_module.step_losses)

    def check(self, trainer) -> None:
        if not self._losses:
            return
        module: FusedModule = trainer.lightning_module
        steps, losses = self._take()
        rows = losses.tolist()  # [steps, k]: one device→host copy
        for (step, epoch, lr), row in zip(steps, rows, strict=True):
            for i, value in enumerate(row):
                if not math.isfinite(value) and i not in module.diverged:
                    module.diverge(i, step, epoch, lr, value, (trainer.current_epoch, trainer.global_step))
        if len(module.diverged) == module.k:
            first = min(module.diverged.values(), key=lambda d: d["step"])
            raise Diverged(first["step"], first["epoch"], first["lr"], float(first["loss"]))
