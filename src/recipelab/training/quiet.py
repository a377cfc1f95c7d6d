"""Lightning's messages that say nothing about the run, turned off where each is made and only where it does
not apply; a warning that applies to the run stays, and one is added (``warn_slow_bf16``).

- The srun hint (``SLURMEnvironment``): Lightning gives it wherever ``srun`` is on the PATH. It applies
  inside a SLURM allocation (``SLURM_JOB_ID`` set) whose tasks were not started by srun; outside one
  there is nothing to prepend srun to.
- The "💡 Tip:" adverts for Lightning's cloud services (litlogger, litmodels), logged at info by the
  Trainer's connectors: never about the run.
- torch's FutureWarning for the ``LeafSpec()`` that Lightning's own ``utilities/_pytree.py`` builds
  (Lightning issue 21326): Lightning's code, not the user's, and it works as it is.
- The model summary (``ModelSummary``): its FLOPs column and total when nothing was counted, and
  "Precision bf16-mixed is not supported by the model summary" under a mixed precision.
- The progress bar (``ProgressBar``): Lightning's rich bar, brought up to date every ``every_n_batches``
  training batches instead of after each one.
- ``ModelCheckpoint``'s warning under manual optimization (the lean step) that a step checkpoint holds the
  weights after the optimizer step: that is the state the automatic loop saves too, and the one a resume
  continues from; its advice (keep a copy of the weights before each step) applies to a module with
  ``saved_models``, which RecipeModule has no use for.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings

import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

SRUN_HINT = r"The `srun` command is available on your system but is not used"
TIPS = ("💡 Tip: For seamless cloud logging", "💡 Tip: For seamless cloud uploads")
LEAF_SPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
AFTER_STEP = r"Using ModelCheckpoint with manual optimization and every_n_train_steps"
MIXED_PRECISION = r"Precision \S+-mixed is not supported by the model summary"


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TIPS)


NO_TIPS = _NoTips()


def silence() -> None:
    """Install the filters (idempotent; before a Trainer is made). The tips come through the logger that
    ``rank_zero_info`` writes to, which ``lightning.pytorch`` names after its own rank_zero module."""
    if "SLURM_JOB_ID" not in os.environ:
        warnings.filterwarnings("ignore", message=SRUN_HINT, category=PossibleUserWarning)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(NO_TIPS)
    module = r"lightning\.pytorch\.utilities\._pytree"
    warnings.filterwarnings("ignore", message=LEAF_SPEC, category=FutureWarning, module=module)
    warnings.filterwarnings("ignore", message=AFTER_STEP, category=UserWarning)


log = logging.getLogger(__name__)


def warn_slow_bf16(trainer: dict) -> None:
    """bf16 autocast on a CPU without bf16 instructions (AVX512-BF16, AMX) is emulated: the default CNN
    trained 12x slower than in fp32 on an AVX2-only AMD EPYC. Said once, as the run starts; it goes on."""
    on_cpu = trainer.get("accelerator") == "cpu" and str(trainer.get("precision", "")).startswith("bf16")
    if on_cpu and not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        _say_slow_bf16(trainer["precision"])


@functools.cache
def _say_slow_bf16(precision: str) -> None:
    log.warning(
        "precision %s on a CPU without bf16 instructions (AVX512-BF16, AMX): emulated, many times slower "
        "than fp32 here; trainer=cpu trains in fp32",
        precision,
    )


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary, less two lines that are wrong for these runs. FLOPs are counted only
    in a forward pass over the module's ``example_input_array``, which RecipeModule leaves unset: without
    one the column and the total read 0, so they are left out (a plain table then). A mixed precision
    keeps the weights in float32, so the 32-bit model size Lightning falls back to is right: its warning
    that the precision "is not supported" is dropped; under any other precision it stays."""

    def _summary(self, trainer, pl_module):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=MIXED_PRECISION, category=UserWarning)
            return super()._summary(trainer, pl_module)

    @staticmethod
    def summarize(summary_data, total_parameters, trainable_parameters, model_size, modes, total_flops, **kw):
        if total_flops:
            RichModelSummary.summarize(
                summary_data, total_parameters, trainable_parameters, model_size, modes, total_flops, **kw
            )
            return
        columns = [column for column in summary_data if column[0] != "FLOPs"]
        table = _format_summary_table(total_parameters, trainable_parameters, model_size, modes, 0, *columns)
        print("\n".join(line for line in table.splitlines() if not line.endswith("Total Flops")))


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, brought up to date every ``every_n_batches`` training batches and at
    an epoch's last one. Lightning's reads every progress-bar metric again and redraws after each batch
    (its ``refresh_rate``, draws a second, paces only the terminal): with the tiny network, 1,060 Python
    calls a step with the bar brought up to date every batch, 993 every 10. Validation and test bars are
    Lightning's."""

    fusable = True  # one bar for a fused chunk, as for one run

    def __init__(self, every_n_batches: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.every_n_batches = every_n_batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        done = batch_idx + 1
        if done % self.every_n_batches and done != trainer.num_training_batches:
            self.val_progress_bar_id = self.test_progress_bar_id = self.predict_progress_bar_id = (
                None  # as super
            )
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
