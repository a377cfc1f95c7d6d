"""A quiet terminal: the quick training run prints no warning but those kept in ``ALLOWED``, each with the
reason it applies to the run; Lightning's messages that do not apply are turned off where they are made
(``recipelab.training.quiet``), and a warning that applies stays."""

import logging
import os
import re
import warnings
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import RichProgressBar

from recipelab.training import quiet
from tests.conftest import train_cli
from tests.training.composed import compose_train

# what a warning line looks like: a Python warning (`<file>.py:<line>: `), W&B's `wandb: WARNING`, an advert
# ("💡 Tip:"), the srun hint, the model summary's FLOPs or its "not supported" precision
WARNING = re.compile(r"warn|tip:|srun|flops|deprecat|not supported|\.py:\d+: ", re.IGNORECASE)
ALLOWED = {  # a warning line's text → why it applies to this run
    "The number of training batches (2) is smaller than the logging interval": (
        "true of the quick run: 512 images in batches of 256 are 2 steps, fewer than log_every_n_steps=50, "
        "so no training step is logged"
    ),
}

if not {"avx512_bf16", "amx_bf16"} & set(Path("/proc/cpuinfo").read_text().split()):  # read here, apart
    ALLOWED["on a CPU without bf16 instructions"] = (
        "true of the quick run on this CPU: it trains in bf16-mixed, which such a CPU emulates many times "
        "slower than fp32 (trainer=cpu)"
    )


def _srun_on_path(tmp_path, monkeypatch) -> None:
    """An ``srun`` on the PATH, as on a machine with SLURM installed; no SLURM task of our own."""
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_NTASKS", raising=False)


def test_the_quick_run_prints_no_warning_that_does_not_apply(tmp_path, monkeypatch):
    _srun_on_path(tmp_path, monkeypatch)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)  # not inside a SLURM allocation
    run = train_cli(
        tmp_path / "logs",
        "data.train_size=512",
        "trainer.max_epochs=1",
        "data.val_size=500",
        "trainer.limit_test_batches=2",
        "callbacks.step_checkpoint.every_n_train_steps=1",  # the step checkpoint saves under the lean step
        quick=False,  # the default trainer: progress bar and model summary
    )
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    lines = (run.proc.stdout + run.proc.stderr).splitlines()
    warned = [line for line in lines if WARNING.search(line)]
    assert [line for line in warned if not any(text in line for text in ALLOWED)] == []
    assert all(any(text in line for line in warned) for text in ALLOWED)  # the list holds no stale entry
    assert "Trainable params" in run.proc.stdout  # the model summary is still shown


def test_the_srun_hint_stays_inside_a_slurm_allocation(tmp_path, monkeypatch):
    _srun_on_path(tmp_path, monkeypatch)
    hints = {}
    for job_id in (None, "42"):  # outside an allocation; inside one, Python started without srun
        if job_id is None:
            monkeypatch.delenv("SLURM_JOB_ID", raising=False)
        else:
            monkeypatch.setenv("SLURM_JOB_ID", job_id)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet.silence()
            SLURMEnvironment._validate_srun_used()
        hints[job_id] = [w for w in caught if "prepend your python command with `srun`" in str(w.message)]
    assert not hints[None] and len(hints["42"]) == 1


def test_the_progress_bar_is_brought_up_to_date_every_n_batches_and_at_the_epochs_end(monkeypatch):
    updated = []
    monkeypatch.setattr(
        RichProgressBar, "on_train_batch_end", lambda self, t, m, o, b, i: updated.append(i + 1)
    )
    bar = quiet.ProgressBar(every_n_batches=3)

    class Trainer:
        num_training_batches = 7

    for i in range(7):
        bar.val_progress_bar_id = (
            "val"  # a bar of the validation before: a skipped batch forgets it, as Lightning's
        )
        bar.on_train_batch_end(Trainer(), None, None, None, i)
        assert bar.val_progress_bar_id is None or updated[-1:] == [i + 1]
    assert updated == [n for n in range(1, 8) if n % 3 == 0 or n == 7]


@pytest.mark.parametrize(("avx512_bf16", "amx"), [(False, False), (True, False), (False, True)])
def test_bf16_on_a_cpu_without_bf16_instructions_is_said_once(avx512_bf16, amx, monkeypatch, caplog):
    """The default trainer (bf16-mixed on the CPU), started twice in one process (as a fused chunk or a
    sweep's jobs start it): one warning on a CPU that lacks both instruction sets, none on one that has
    either; trainer=cpu (fp32) never warns."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    quiet._say_slow_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger=quiet.log.name):
        for _ in range(2):
            quiet.warn_slow_bf16(compose_train().trainer)
        quiet.warn_slow_bf16(compose_train("trainer=cpu").trainer)
    warned = [r.getMessage() for r in caplog.records if "without bf16 instructions" in r.getMessage()]
    assert len(warned) == (0 if avx512_bf16 or amx else 1)
    assert all("precision bf16-mixed" in line and "trainer=cpu trains in fp32" in line for line in warned)
    quiet._say_slow_bf16.cache_clear()  # the next test in this process may warn again
