"""Sweep jobs as SLURM jobs that outlive their time limit: save the step, requeue, resume where they were.

``launcher=slurm`` runs each job of a sweep through hydra-submitit-launcher: submitit pickles the job, and
``sbatch`` runs ``srun python -m submitit.core._submit`` on it, once per task (DDP rank). recipelab's
launcher (``hydra_plugins.recipelab_slurm``: Hydra takes launchers from that package only) adds, here:

- ``run_task``: SLURM's warning before the time limit (``--signal=USR2@signal_delay_s``: submitit's signal,
  ``SUBMITIT_PREEMPT_SIGNAL`` changes it) ends training as SIGTERM does: GracefulStop lets the step under
  way finish, ``last.ckpt`` holds it, ``metrics.json`` says ``interrupted``, the W&B run is marked
  preempted. Only then does submitit's own handler requeue the job (``scontrol requeue``; after a time
  limit at most ``max_num_timeout`` times). Left to itself, submitit requeues at once, from inside its
  signal handler, mid-step and with nothing saved.
- ``ResumeRequeued``: a requeued job (``SLURM_RESTART_COUNT`` > 0: requeued by itself, by SLURM after a
  preemption or a node failure, or by ``scontrol requeue``) resumes in its own folder from ``last.ckpt``
  and in its own W&B run. ``sweep.run_job`` resumes a job whose folder held the same overrides before
  this run of the sweep; a requeued job is the same SLURM job, so its folder is its own.
- ``prepare_launch``: GPUs per node from the trainer; where the cluster keeps no job accounting
  (``accounting_storage/none``, as ``scripts/slurm_local.sh`` sets up) submitit learns job states from
  ``squeue`` instead of a ``sacct`` that fails (and warns) on every call.
- each task uses the CPUs SLURM gave it; the tasks other than rank 0 log into their own file and leave
  ``.hydra/`` to rank 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from submitit import JobEnvironment
from submitit.core.job_environment import SignalHandler
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from recipelab.run.sweep import PREVIOUS


def warning_signal() -> signal.Signals:
    """The signal SLURM sends before the time limit: submitit's (``SUBMITIT_PREEMPT_SIGNAL``, USR2)."""
    return JobEnvironment._usr_sig()


def requeued() -> bool:
    """Whether SLURM started this job before (and requeued it)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def prepare_launch(params: dict, config: DictConfig) -> None:
    """In the sweep's process, before submitting: GPUs per node from the trainer (a CPU job asks for none),
    job states from squeue where sacct is off."""
    trainer = config.trainer
    if params.get("gpus_per_node") is None and trainer.accelerator in ("gpu", "cuda"):
        params["gpus_per_node"] = trainer.devices
    if accounting_off():
        SlurmJob.watcher = SqueueWatcher(delay_s=SlurmJob.watcher._delay_s)


def run_task(call, sweep_overrides: list[str], *args):
    """In each task of a SLURM job: ``call(sweep_overrides, *args)`` (the Hydra job), then the requeue if
    the job stopped on SLURM's warning."""
    rank = int(os.environ.get("SLURM_PROCID", 0))
    if rank:  # SLURM starts every rank as this same job: rank 0 writes .hydra/ and train.log
        sweep_overrides = [*sweep_overrides, "hydra.output_subdir=null", f"hydra.job.name=train_rank{rank}"]
    threads = os.environ.get("SLURM_CPUS_PER_TASK")
    if threads:
        torch.set_num_threads(int(threads))
        os.environ["OMP_NUM_THREADS"] = threads  # Lightning then leaves the thread count alone
    try:
        return call(sweep_overrides, *args)
    except SystemExit as stop:  # the entry's exit: 128 + the signal when interrupted
        if stop.code == 128 + warning_signal():
            requeue_after_saved_step()
        raise


def requeue_after_saved_step() -> None:
    """Call submitit's handler of the warning signal, which GracefulStop held back until the step was saved:
    it resubmits this job as it is (the launcher's ``checkpoint``), runs ``scontrol requeue`` and exits.
    On ranks other than 0 it does nothing."""
    sig = warning_signal()
    handler = signal.getsignal(sig)
    if isinstance(getattr(handler, "__self__", None), SignalHandler):
        print(f"SLURM job {JobEnvironment().job_id}: last.ckpt saved, requeueing", flush=True)
        handler(sig, None)


class ResumeRequeued(Callback):
    """Hydra callback: a requeued job's folder counts as holding this job's overrides before this start,
    so ``sweep.run_job`` resumes it from ``last.ckpt`` (or skips it if it had finished). Every rank of a
    DDP job reaches the same answer; the first one to write the note wins, the others find it."""

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        out = Path(config.hydra.runtime.output_dir)
        if not requeued() or (out / PREVIOUS).exists():
            return
        tmp = out / f"{PREVIOUS}.tmp-{os.getpid()}"
        tmp.mkdir(parents=True)
        OmegaConf.save(config.hydra.overrides.task, tmp / "overrides.yaml")
        try:
            tmp.rename(out / PREVIOUS)
        except OSError:  # another rank wrote it first
            shutil.rmtree(tmp, ignore_errors=True)


def accounting_off() -> bool:
    """Whether the cluster keeps no job accounting (then ``sacct`` fails on every call)."""
    try:
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "accounting_storage/none" in config.stdout


class SqueueWatcher(SlurmInfoWatcher):
    """submitit's job states from ``squeue``. A job it no longer lists (over ``MinJobAge`` after its end)
    counts as finished: submitit then reads its result, or reports that it left none."""

    def _make_command(self):
        if not self._registered - self._finished:
            return None
        return ["squeue", "--noheader", "--states=all", "--format=%i|%T|%N"]

    def read_info(self, string):
        text = string.decode() if isinstance(string, bytes) else string
        info = super().read_info("JobID|State|NodeList\n" + text)
        for job_id in self._registered - self._finished - set(info):
            info[job_id] = {"JobID": job_id, "State": "NOT_IN_SQUEUE", "NodeList": ""}
        return info
