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

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
