"""Lightning's EMA weight averaging, tested as it validated: on the averaged weights."""

from __future__ import annotations

from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMA(EMAWeightAveraging):
    """``EMAWeightAveraging`` whose checkpoints, loaded to test or evaluate, give the averaged weights.

    Lightning's callback saves the averaged weights as ``state_dict`` and the training weights as
    ``current_model_state``; loading a checkpoint while it exists puts the training weights back in the
    model, also for ``trainer.test(ckpt_path="best")`` after fit, which then tested the raw weights of
    the checkpoint that the averaged ones had been chosen by. Outside fit the ``state_dict`` stays.
    """

    def __init__(self, *args, start_epoch: int = 0, **kwargs):
        """``start_epoch``: the first epoch whose steps update the average (its first update copies the
        weights). Lightning's ``update_starting_at_epoch`` does not delay the step updates: with
        ``update_starting_at_step`` unset they run from the first step, so a short run's average stays
        close to the initial weights."""
        super().__init__(*args, **kwargs)
        self.start_epoch = start_epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch >= self.start_epoch:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
