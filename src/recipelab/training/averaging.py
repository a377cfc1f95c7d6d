"""Lightning's weight averaging: EMA tested as it validated (on the averaged weights), and SWA whose
batch-norm update also reaches the copies of a fused chunk."""

from __future__ import annotations

from lightning.pytorch.callbacks import EMAWeightAveraging, StochasticWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch.nn.modules.batchnorm import _BatchNorm

from recipelab.models.seed_stack import SeedStack


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


class SWA(StochasticWeightAveraging):
    """Lightning's ``StochasticWeightAveraging``, whose batch-norm update also finds the norms of a fused
    chunk's ``SeedStack`` (``seeds_per_process``): there the network is a skeleton run on stacked tensors,
    not a submodule, so Lightning's search of ``pl_module.modules()`` finds none and would test the
    averaged weights with stale statistics. Each copy's statistics are recomputed from its own batches
    (the stacked buffers are reset in place; the copies' forward passes refill them), as its separate
    run's are. The averaging itself is elementwise on the stacked parameters: each copy its own average.
    For any other module it is Lightning's callback unchanged."""

    fusable = True

    @staticmethod
    def pl_module_contains_batch_norm(pl_module) -> bool:
        stack = getattr(pl_module, "model", None)
        modules = stack.skeleton.modules() if isinstance(stack, SeedStack) else pl_module.modules()
        return any(isinstance(m, _BatchNorm) for m in modules)

    def reset_batch_norm_and_save_state(self, pl_module) -> None:
        stack = getattr(pl_module, "model", None)
        if not isinstance(stack, SeedStack):
            super().reset_batch_norm_and_save_state(pl_module)
            return
        self.momenta = {}
        for name, module in stack.skeleton.named_modules():
            if isinstance(module, _BatchNorm) and module.track_running_stats:
                stack.stacked(f"{name}.running_mean").zero_()
                stack.stacked(f"{name}.running_var").fill_(1)
                stack.stacked(f"{name}.num_batches_tracked").zero_()
                self.momenta[module] = module.momentum
                module.momentum = None  # a cumulative mean over the epoch, as Lightning's update does
