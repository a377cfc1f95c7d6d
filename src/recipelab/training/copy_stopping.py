"""Early stopping per copy of a fused chunk (``seeds_per_process``), as each copy's separate run would stop.

Lightning's ``EarlyStopping`` ends the whole fit; a chunk's copies stop at different epochs. Each copy gets
its own clone of the run's ``EarlyStopping`` watching its own metric (``<monitor>/copy<i>``), and the
clones decide by Lightning's own rule (``_evaluate_stopping_criteria``: patience, min_delta, thresholds,
non-finite values; Lightning has no public per-value check). A copy that stops is frozen: the optimizer
still steps the stacked tensors (momentum and weight decay would move it even with its loss masked), so
its parameters and buffers are put back after every step (kept in this callback's state, so a resumed
chunk keeps them); its checkpoints, members, history and record
end at its stop (``FusedModule.trains``). The chunk ends when no copy trains.
"""

from __future__ import annotations

import copy

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.trainer.states import TrainerFn

from recipelab.training.fused import FusedModule, copy_key


class CopyEarlyStopping(L.Callback):
    """``template``'s settings, one stopping state per copy of a chunk of ``k``."""

    def __init__(self, template: EarlyStopping, k: int):
        self.copies = [copy.deepcopy(template) for _ in range(k)]
        for i, own in enumerate(self.copies):
            own.monitor = copy_key(template.monitor, i)
        self.frozen: dict[int, dict[str, torch.Tensor]] = {}  # a stopped copy's tensors, as it stopped

    def setup(self, trainer, pl_module, stage: str) -> None:
        for own in self.copies:  # where Lightning checks: train epoch end unless validation runs otherwise
            own.setup(trainer, pl_module, stage)

    def on_train_epoch_end(self, trainer, pl_module: FusedModule) -> None:
        if self.copies[0]._check_on_train_epoch_end:
            self._check(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module: FusedModule) -> None:
        if not self.copies[0]._check_on_train_epoch_end:
            self._check(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module: FusedModule, outputs, batch, batch_idx) -> None:
        with torch.no_grad():
            for i, tensors in self.frozen.items():
                for name, value in tensors.items():
                    pl_module.model.stacked(name)[i].copy_(value)

    def _check(self, trainer, pl_module: FusedModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or trainer.fast_dev_run:
            return
        logs, epoch = trainer.callback_metrics, trainer.current_epoch
        for i, own in enumerate(self.copies):
            if i in pl_module.stopped or i in pl_module.diverged or not own._validate_condition_metric(logs):
                continue
            stop, reason = own._evaluate_stopping_criteria(logs[own.monitor].squeeze())
            if stop:
                own.stopped_epoch, own.stopping_reason_message = epoch, reason
                pl_module.stopped[i] = {"epoch": epoch, "step": trainer.global_step}
                self.frozen[i] = self._tensors(pl_module, i)
        if not any(pl_module.trains(i, epoch + 1) for i in range(pl_module.k)):
            trainer.should_stop = True

    @staticmethod
    def _tensors(pl_module: FusedModule, i: int) -> dict[str, torch.Tensor]:
        stack = pl_module.model
        return {n: stack.stacked(n)[i].detach().clone() for n in [*stack.param_names, *stack.buffer_names]}

    def state_dict(self) -> dict:
        # the frozen tensors too: a checkpoint written at a step's end before they were put back (by a
        # callback ahead of this one, as the signal handler's) holds the stepped ones in the stack
        return {"copies": [own.state_dict() for own in self.copies], "frozen": self.frozen}

    def load_state_dict(self, state_dict: dict) -> None:
        for own, state in zip(self.copies, state_dict["copies"], strict=True):
            own.load_state_dict(state)
        self.frozen = {int(i): tensors for i, tensors in state_dict["frozen"].items()}
