"""What keeps a run trustworthy when things go wrong: divergence, random state, checkpoint writes."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

from recipelab.errors import Diverged, Interrupted


class StopOnDivergence(L.Callback):
    """Raise ``Diverged`` before the backward pass of a non-finite loss: no bad step is taken or saved.

    Lightning's EarlyStopping(check_finite=True) checks a logged metric at validation or epoch end only;
    this checks every batch: its first loss, so the trial points of L-BFGS's line search (which it may
    reject) do not count. Under DDP the ranks agree (one all-reduce), so a rank that diverges ends the
    job on every rank at the same step instead of leaving the others waiting in a collective.
    """

    def __init__(self):
        self._checked = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._checked = False

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if self._checked:
            return
        self._checked = True
        bad = (~torch.isfinite(loss.detach())).any().float()
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce(bad, reduce_op="sum")
        if bad > 0:
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


class GracefulStop(L.Callback):
    """SIGINT and SIGTERM end training after the optimizer step under way, with ``last.ckpt`` saved at it.

    The handlers only note the signal; the step finishes, then ``Interrupted`` is raised (and recorded by
    the run). Lightning's own handling would exit 1 on Ctrl-C and 0 on SIGTERM, with no checkpoint of the
    steps since the last one. A second signal of the same kind ends the process at once. ``signals``: their
    names (launcher=slurm adds SLURM's time-limit warning). Under DDP the ranks agree (one all-reduce a
    step): all stop at the same step, as soon as one of them got a signal.
    """

    def __init__(self, dirpath: str, filename: str = "last", signals=("SIGINT", "SIGTERM")):
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

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict["rows"])
