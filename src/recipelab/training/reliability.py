"""What keeps a run trustworthy when things go wrong: divergence, random state, checkpoint writes."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.plugins.io import TorchCheckpointIO

from recipelab.errors import Diverged


class StopOnDivergence(L.Callback):
    """Raise ``Diverged`` before the backward pass of a non-finite loss: no bad step is taken or saved.

    Lightning's EarlyStopping(check_finite=True) checks a logged metric at validation or epoch end only;
    this checks every step.
    """

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss.detach()).all():
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            value = loss.detach().float().item()
            raise Diverged(trainer.global_step, trainer.current_epoch, lr, value)


class RandomStateCheckpoint(L.Callback):
    """Save the global torch and python random states with each checkpoint and restore them on resume.

    Lightning restores model, optimizer, scheduler, loops and callbacks, but not the global generators
    (which dropout draws from); a resumed run must continue the same random streams. numpy's state is
    left out: training never draws from it, and its arrays would not load with ``weights_only=True``.
    """

    def state_dict(self) -> dict:
        states = _collect_rng_states(include_cuda=torch.cuda.is_available())
        states.pop("numpy", None)
        return {"rng": states}

    def load_state_dict(self, state_dict: dict) -> None:
        _set_rng_states(state_dict["rng"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint to a temporary file beside it, fsync it, then rename it over the old one.

    Lightning's own transaction writes the temporary file in the system's temp folder and moves it, which
    is a copy (not atomic) when that folder is on another file system than the run folder.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
