"""The training step makes no device→host sync on the steps that do not log (issue 17).

On the CPU there is no device queue to drain, so the test watches for what would make the host wait on
a GPU, with two pairs of eyes, each recording what it saw under the batch it happened in:

- every aten call inside the training steps goes through a TorchDispatchMode, which records the operators
  that need a value on the host (``nonzero``, ``masked_select``, ``.item()``'s ``_local_scalar_dense``...);
- the tensor methods that copy to the host (``item``, ``tolist``, ``numpy``, ``cpu``, ``bool``, ``float``,
  ``int``, ``index``, and ``to`` the host) are wrapped: on a CPU tensor most send no operator to the mode.
  On the CPU the host is the training device too, so ``to`` counts where the code names the host
  (``"cpu"``), not where it names the device it computes on (``x.device``, ``self.device``, a tensor):
  those are moves to the device on a GPU (the batch's transfer, a mask drawn on the host). A
  ``to(torch.device("cpu"))`` goes unseen here; the ``gpu`` test below sees it.

Only the batches whose loggers write (and read values anyway) may contain them.
"""

from __future__ import annotations

import functools
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
# tensor methods that read a value on the host; on the CPU most never reach the dispatcher
HOST_READS = ("item", "tolist", "numpy", "cpu", "to", "__bool__", "__float__", "__int__", "__index__")
EVERY = 20


def _to_host(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether this call copies to the host: always, but for ``to``, whose target must name the CPU."""
    if name != "to":
        return True
    named = [a for a in (*args, kwargs.get("device")) if isinstance(a, str)]
    return any(torch.device(a).type == "cpu" for a in named)


class _Recorder(TorchDispatchMode):
    def __init__(self, probe):
        super().__init__()
        self.probe = probe

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if name in SYNC_OPS:
            self.probe.record(name)
        return func(*args, **(kwargs or {}))


class SyncProbe(L.Callback):
    """Records the syncs of each training batch, from its start until the next one starts or validation
    begins (so the batch's own hooks, the optimizer step and the callbacks' checks count)."""

    def __init__(self):
        self.batch: int | None = None
        self.syncs: dict[int, list[str]] = {}
        self.mode = _Recorder(self)
        self._saved: dict[str, object] = {}

    def record(self, what: str) -> None:
        if self.batch is not None:
            self.syncs.setdefault(self.batch, []).append(what)

    def __enter__(self):
        for name in HOST_READS:
            self._saved[name] = torch.Tensor.__dict__.get(name)  # None: inherited from the C base
            setattr(torch.Tensor, name, self._watched(name, getattr(torch.Tensor, name)))
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        if not self._saved:  # not watching
            return
        self.mode.__exit__(*exc)
        for name, own in self._saved.items():
            if own is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, own)
        self._saved.clear()

    def _watched(self, name, method):
        @functools.wraps(method)
        def watched(tensor, *args, **kwargs):
            if _to_host(name, args, kwargs):
                self.record(f"Tensor.{name}")
            return method(tensor, *args, **kwargs)

        return watched

    def on_train_start(self, trainer, pl_module):
        self.__enter__()

    def on_train_end(self, trainer, pl_module):
        self.__exit__(None, None, None)

    def on_exception(self, trainer, pl_module, exception):  # the other tests get torch's own methods back
        self.__exit__(None, None, None)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = trainer.global_step

    def on_validation_start(self, trainer, pl_module):
        self.batch = None


def test_the_probe_sees_every_host_read():
    probe = SyncProbe()
    probe.batch = 0
    x = torch.tensor([1.0, 2.0])
    with probe:
        bool(x[0] > 0), float(x[0]), int(x[0]), [0, 1][x[0].long()], x.sum().item()
        x.tolist(), x.numpy(), x.cpu(), x.to("cpu"), x.to("cpu:0", torch.float64), x.to(device="cpu")
        x.to(x.device), x.to(x), x.to(torch.float64)  # to the device it computes on, or no device
        x.nonzero()
    seen = probe.syncs[0]
    for name in HOST_READS:
        assert f"Tensor.{name}" in seen, name
    assert seen.count("Tensor.to") == 3 and "nonzero" in seen and "_local_scalar_dense" in seen
    probe.syncs.clear()
    x.tolist(), x.to("cpu"), float(x[0])
    assert not probe.syncs and not any(n in torch.Tensor.__dict__ for n in HOST_READS)  # all restored


def fit_with(probe_cls, tmp_path, *recipe, step=None):
    """A 50-step fit (batches 19 and 39 log) with ``probe_cls`` first among the callbacks, so that a batch's
    number is set before the other callbacks' hooks of that batch run; ``step``: wraps the module's
    training step. The probe."""
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
    if step is not None:
        run.module.training_step = step(run.module.training_step)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert run.trainer.global_step == 50
    return probe


@pytest.mark.parametrize("recipe", [[], ["experiment=fashion_fast"]], ids=["default", "fashion_fast"])
def test_the_training_step_syncs_only_on_the_steps_the_loggers_write(tmp_path, recipe):
    probe = fit_with(SyncProbe, tmp_path, *recipe)
    logging_batches = {b for b in range(50) if (b + 1) % EVERY == 0}
    assert set(probe.syncs) <= logging_batches, probe.syncs
    assert set(probe.syncs) == logging_batches  # the probe works: the logging steps do read values


def test_a_step_that_reads_a_value_on_every_batch_is_caught(tmp_path):
    def reading(training_step):
        def step(batch, batch_idx):
            loss = training_step(batch, batch_idx)
            loss.detach().tolist()  # a value for a progress print: a device→host copy on a GPU
            return loss

        return step

    probe = fit_with(SyncProbe, tmp_path, "model=mlp", step=reading)
    assert set(probe.syncs) == set(range(50))
    assert all("Tensor.tolist" in probe.syncs[b] for b in range(50))


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
