"""What keeps a run trustworthy when things go wrong: divergence, random state, checkpoint writes."""

from __future__ import annotations

import math
import os
import signal
import threading
from functools import cached_property
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

from recipelab.errors import Diverged, Interrupted, UserError


class StopOnDivergence(L.Callback):
    """End the run (``Diverged``) when a training loss became NaN or infinite, without a host sync a step.

    Every step keeps its loss (a reference to the tensor on its device: no kernel runs) with its step
    number, epoch and lr; the host reads the kept losses only every ``check_every`` optimizer steps
    (default: the loggers' ``log_every_n_steps``, which read the device then anyway), before validation
    and before any checkpoint is written, and raises at the first that is NaN or infinite. So a bad step
    is never saved, validated or tested, and at most ``check_every - 1`` further steps run on the broken
    weights before the run stops. Reading the loss every step would make the host wait for the device
    every step: on a GPU the queue would drain. (Folding a flag on the device every step instead took
    about ten small tensor operations a step: ~0.1 ms on 2 CPU cores.)

    Lightning's EarlyStopping(check_finite=True) checks a logged metric at validation or epoch end only.
    The first loss of a batch counts, so the trial points of L-BFGS's line search (which it may reject)
    do not. Under DDP the ranks agree (one all-gather a check): a rank that diverges ends the job on
    every rank at the same step instead of leaving the others waiting in a collective.
    """

    def __init__(self, check_every: int | None = None):
        if check_every is not None and check_every < 1:
            raise UserError(f"callbacks.stop_on_divergence.check_every={check_every}: must be >= 1")
        self.check_every = check_every
        self._counted = False
        self._losses: list[torch.Tensor] = []  # the first loss of each step since the last check
        self._steps: list[tuple[int, int, float]] = []  # their step number, epoch and lr

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._counted = False

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if self._counted:
            return
        self._counted = True
        self._losses.append(loss.detach())
        lr = trainer.optimizers[0].param_groups[0]["lr"]  # a 0-d CPU tensor under a compiled step
        self._steps.append((trainer.global_step, trainer.current_epoch, float(lr)))

    def check(self, trainer) -> None:
        """Read the kept losses (one device→host copy; one all-gather under DDP) and raise at the earliest
        step whose loss was not finite on some rank."""
        if not self._losses:
            return
        steps, losses = self._take()
        rows = losses[None]  # [ranks, steps]: under DDP every rank's losses of the same steps
        if trainer.world_size > 1:
            rows = trainer.strategy.all_gather(losses).reshape(-1, len(steps))
        for (step, epoch, lr), column in zip(steps, rows.T.tolist(), strict=True):
            bad = [value for value in column if not math.isfinite(value)]
            if bad:
                raise Diverged(step, epoch, lr, bad[0])

    def _take(self) -> tuple[list[tuple[int, int, float]], torch.Tensor]:
        """The kept steps and their losses stacked (still on their device); the keeping starts anew."""
        steps, losses = self._steps, torch.stack(self._losses).float()
        self._losses, self._steps = [], []
        return steps, losses

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % (self.check_every or trainer.log_every_n_steps or 1) == 0:
            self.check(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self.check(trainer)


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


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, its ``state_key`` built once. Lightning reads a callback's state key
    at every hook it calls (six a training step), and ModelCheckpoint builds it anew from its settings
    each time: ~2 µs, 18 times a step for the default callbacks' three. The settings it is built from
    (monitor, mode, the save intervals) are fixed at construction, so the key is the same string."""

    @cached_property
    def state_key(self) -> str:
        return super().state_key


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


class GracefulStop(L.Callback):
    """SIGINT and SIGTERM end training after the optimizer step under way, with ``last.ckpt`` saved at it.

    The handlers only note the signal; the step finishes, then ``Interrupted`` is raised (and recorded by
    the run). Lightning's own handling would exit 1 on Ctrl-C and 0 on SIGTERM, with no checkpoint of the
    steps since the last one. A second signal of the same kind ends the process at once. ``signals``: their
    names (launcher=slurm adds SLURM's time-limit warning). Under DDP the ranks agree with one all-reduce
    every ``check_every`` steps (default: ``log_every_n_steps``) and after validation: all stop at the same
    step, at most that many steps after one of them got a signal. One process checks a Python int every
    step (no device sync).
    """

    def __init__(
        self,
        dirpath: str,
        filename: str = "last",
        signals=("SIGINT", "SIGTERM"),
        check_every: int | None = None,
    ):
        if check_every is not None and check_every < 1:
            raise UserError(f"callbacks.graceful_stop.check_every={check_every}: must be >= 1")
        self.check_every = check_every
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.signals = tuple(signal.Signals[name] for name in signals)
        self.signum: int | None = None
        self._previous: dict = {}

    def _note(self, signum, frame) -> None:
        if self.signum == signum:  # asked twice: stop now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        self.signum = signum

    def on_train_start(self, trainer, pl_module) -> None:
        # after Lightning registered its own handlers (which would turn SIGTERM into exit code 0)
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._note) for s in self.signals}

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def stop_if_asked(self, trainer) -> None:
        signum = self.signum or 0
        if trainer.world_size > 1:  # the first signal any rank got
            asked = torch.tensor(signum, device=trainer.strategy.root_device)
            signum = int(trainer.strategy.reduce(asked, reduce_op="max"))
        if signum:
            trainer.save_checkpoint(self.path)
            raise Interrupted(signum, trainer.global_step, trainer.current_epoch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (
            trainer.world_size == 1
            or trainer.global_step % (self.check_every or trainer.log_every_n_steps or 1) == 0
        ):
            self.stop_if_asked(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.stop_if_asked(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.restore()  # testing and what follows keep the usual handlers


class ValidationHistory(L.Callback):
    """Each validation's metrics during fit, with its epoch, step and training time so far (the Timer's),
    kept in checkpoints so a resumed run keeps its whole curve. The run writes it into metrics.json."""

    def __init__(self):
        self.rows: list[dict] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        if timer is not None:
            row["time_s"] = round(timer.time_elapsed("train"), 3)
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
        self.rows.append(row)

    def row_at(self, step: int) -> dict | None:
        """The last validation at ``step`` (the one a checkpoint saved at that step was ranked by)."""
        return next((r for r in reversed(self.rows) if r["step"] == step), None)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict["rows"])
