"""A fused chunk's checkpoints of each copy, in the copy's own folder, as its separate run would leave them:
single-network checkpoints (``model.``-prefixed weights and the copy's config), which evaluate, ensemble and
report read as they read any run's. The chunk's own checkpoints (every copy, optimizer state) resume it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from recipelab.training.fused import FusedModule, copy_key
from recipelab.training.reliability import AtomicCheckpointIO, ModelCheckpoint


def copy_weights(trainer, pl_module: FusedModule, i: int) -> dict:
    """Copy i's network state, as its separate run's checkpoint holds it: under weight averaging (EMA)
    the averaged weights, which Lightning keeps in the callback's ``_average_model`` (no public accessor
    in Lightning 2.6) and which a separate run's checkpoint holds as its ``state_dict``."""
    averaging = next((c for c in trainer.callbacks if isinstance(c, WeightAveraging)), None)
    average = getattr(averaging, "_average_model", None)
    stack = average.module.model if average is not None else pl_module.model
    return stack.copy_state_dict(i)


def save_copy(trainer, pl_module: FusedModule, i: int, config: dict, path: Path) -> None:
    """Copy i's network (``copy_weights``) as a single-network checkpoint at ``path``."""
    checkpoint = {
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "pytorch-lightning_version": L.__version__,
        "state_dict": {f"model.{name}": t for name, t in copy_weights(trainer, pl_module, i).items()},
        "hyper_parameters": {"config": config},
    }
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)


class CopyCheckpoints(L.Callback):
    """What the run's two ModelCheckpoints do for a separate run, for each copy, in the copy's own folder:
    ``best-epoch<e>.ckpt`` (the best by its own ``monitor``, top 1) and ``last.ckpt``."""

    def __init__(self, dirpaths: Sequence[Path], configs: Sequence[dict], monitor: str, mode: str = "max"):
        self.dirpaths, self.configs = [Path(d) for d in dirpaths], list(configs)
        self.monitor, self.mode = monitor, mode
        self.best: list[float | None] = [None] * len(self.dirpaths)
        self.best_paths: list[str] = [""] * len(self.dirpaths)

    def _better(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.mode == "max" else value < best)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        for i, folder in enumerate(self.dirpaths):
            if not pl_module.trains(i, trainer.current_epoch):  # its last saved state stays, as the
                continue  # separate run saves nothing after it diverged or stopped
            value = trainer.callback_metrics.get(copy_key(self.monitor, i))
            if value is not None and self._better(float(value), self.best[i]):
                path = folder / f"best-epoch{trainer.current_epoch:03d}.ckpt"
                save_copy(trainer, pl_module, i, self.configs[i], path)
                if self.best_paths[i] and self.best_paths[i] != str(path):
                    Path(self.best_paths[i]).unlink(missing_ok=True)
                self.best[i], self.best_paths[i] = float(value), str(path)
            self._save_last(trainer, pl_module, i)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Without validation (``limit_val_batches=0``) a separate run's ModelCheckpoint saves its last
        checkpoint at each training epoch's end, and keeps no best (it has no metric to rank by); with
        ``check_val_every_n_epoch`` above 1 it saves only after a validation (Lightning's
        ``ModelCheckpoint._should_save_on_train_epoch_end``, private)."""
        if trainer.check_val_every_n_epoch != 1 or sum(trainer.num_val_batches) > 0:
            return
        for i in range(len(self.dirpaths)):
            if pl_module.trains(i, trainer.current_epoch):
                self._save_last(trainer, pl_module, i)

    def _save_last(self, trainer, pl_module, i: int) -> None:
        save_copy(trainer, pl_module, i, self.configs[i], self.dirpaths[i] / "last.ckpt")

    def state_dict(self) -> dict:
        return {"best": self.best, "best_paths": self.best_paths}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best, self.best_paths = list(state_dict["best"]), list(state_dict["best_paths"])


class CopyMembers(L.Callback):
    """A time-point ensemble's members for each copy (``callbacks=time_points``: a ModelCheckpoint without a
    monitor that keeps every ``every_n_epochs``-th epoch), in the folder its separate run's config names
    (``dirpaths``), under the name ``template`` (that ModelCheckpoint) gives the epoch. Saved at the end of
    the training epoch, where Lightning saves such a checkpoint when validation runs after every epoch."""

    def __init__(self, template: ModelCheckpoint, every_n_epochs: int, dirpaths: Sequence[Path], configs):
        self.template, self.every_n_epochs = template, every_n_epochs
        self.dirpaths, self.configs = [Path(d) for d in dirpaths], list(configs)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        metrics = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        name = Path(self.template.format_checkpoint_name(metrics)).name
        for i, folder in enumerate(self.dirpaths):
            if pl_module.trains(i, trainer.current_epoch):
                save_copy(trainer, pl_module, i, self.configs[i], folder / name)
