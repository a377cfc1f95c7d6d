"""The training step makes no device→host sync on the steps that do not log (issue 17).

On the CPU there is no device queue to drain, so the test watches for the operators that would make
the host wait on a GPU: every aten call inside the training steps goes through a TorchDispatchMode,
which records the sync operators (``.item()``, ``bool(tensor)``, ``nonzero``, ...) with the batch they
happened in. Only the batches whose loggers write (and read values anyway) may contain them.
"""

from __future__ import annotations

import traceback
import warnings

import lightning as L
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from recipelab.build import build_run
from tests.training.composed import compose_train

# operators that copy a device value to the host (or need its value to size their output)
SYNC_OPS = {"_local_scalar_dense", "is_nonzero", "nonzero", "masked_select", "equal", "_unique2", "item"}
EVERY = 20


class _Recorder(TorchDispatchMode):
    def __init__(self, probe):
        super().__init__()
        self.probe = probe

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if name in SYNC_OPS and self.probe.batch is not None:
            self.probe.syncs.setdefault(self.probe.batch, []).append(name)
        return func(*args, **(kwargs or {}))


class SyncProbe(L.Callback):
    """Records the sync operators of each training batch, from its start until the next one starts or
    validation begins (so the batch's own hooks, the optimizer step and the callbacks' checks count)."""

    def __init__(self):
        self.batch: int | None = None
        self.syncs: dict[int, list[str]] = {}
        self.mode = _Recorder(self)

    def on_train_start(self, trainer, pl_module):
        self.mode.__enter__()

    def on_train_end(self, trainer, pl_module):
        self.mode.__exit__(None, None, None)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = trainer.global_step

    def on_validation_start(self, trainer, pl_module):
        self.batch = None


def test_the_probe_sees_a_sync():
    probe = SyncProbe()
    probe.batch = 0
    with probe.mode:
        bool(torch.tensor(1.0) > 0)
        torch.tensor([0, 1]).nonzero()
    # what the old per-step check did (bool of a tensor), and a boolean-mask index
    assert probe.syncs == {0: ["_local_scalar_dense", "nonzero"]}


def fit_with(probe_cls, tmp_path, *recipe):
    """A 50-step fit (batches 19 and 39 log) with ``probe_cls`` first among the callbacks, so that a batch's
    number is set before the other callbacks' hooks of that batch run; the probe."""
    cfg = compose_train(
        *recipe,
        "data.train_size=1000",
        "data.batch_size=20",
        "data.val_size=200",
        "trainer.max_epochs=1",
        f"trainer.log_every_n_steps={EVERY}",
        "logger=csv",
        f"paths.output_dir={tmp_path}",
        f"+callbacks.sync_probe._target_=tests.training.test_no_sync.{probe_cls.__name__}",
    )
    run = build_run(cfg)
    probe = next(c for c in run.callbacks if isinstance(c, probe_cls))
    run.trainer.callbacks.remove(probe)
    run.trainer.callbacks.insert(0, probe)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert run.trainer.global_step == 50
    return probe


@pytest.mark.parametrize("recipe", [[], ["experiment=fashion_fast"]], ids=["default", "fashion_fast"])
def test_the_training_step_syncs_only_on_the_steps_the_loggers_write(tmp_path, recipe):
    probe = fit_with(SyncProbe, tmp_path, *recipe)
    logging_batches = {b for b in range(50) if (b + 1) % EVERY == 0}
    assert set(probe.syncs) <= logging_batches, probe.syncs
    assert set(probe.syncs) == logging_batches  # the probe works: the logging steps do read values


class CudaSyncProbe(SyncProbe):
    """On a GPU, CUDA's own detector (``torch.cuda.set_sync_debug_mode``) warns on every call that makes
    the host wait for the device, blocking copies included; each warning is kept, with the Python stack
    it came from, under the batch it happened in."""

    def on_train_start(self, trainer, pl_module):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = self._record
        torch.cuda.set_sync_debug_mode("warn")

    def on_train_end(self, trainer, pl_module):
        torch.cuda.set_sync_debug_mode(0)
        self._warnings.__exit__(None, None, None)

    def _record(self, message, category, filename, lineno, file=None, line=None):
        if self.batch is not None and "synchronizing" in str(message):
            self.syncs.setdefault(self.batch, []).append("".join(traceback.format_stack(limit=12)[:-1]))


@pytest.mark.gpu
def test_no_cuda_sync_on_the_steps_that_do_not_log(tmp_path):
    probe = fit_with(CudaSyncProbe, tmp_path, "experiment=fashion_fast", "trainer=gpu")
    quiet = {b: stacks for b, stacks in probe.syncs.items() if (b + 1) % EVERY}
    assert not quiet, "\n".join(f"batch {b}:\n{stacks[0]}" for b, stacks in sorted(quiet.items())[:3])
    assert probe.syncs  # the detector works: the logging steps read values
