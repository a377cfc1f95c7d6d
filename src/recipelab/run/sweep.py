"""Sweep jobs that survive failures, skip what is done, resume what was interrupted, and count at the end.

A Hydra sweep re-raises the first failed job's error after its batch and never reaches the end of the
sweep; here a job that fails is recorded (``metrics.json`` status ``failed``, its W&B run marked failed)
and returns, so the other jobs run. Re-running a sweep into its folder (``hydra.sweep.dir=<folder>``)
skips the jobs whose ``metrics.json`` says they finished with the same overrides, and resumes the others
from their ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections import Counter
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from recipelab.errors import Diverged, UserError
from recipelab.run import distributed, resume, tracking

FINISHED = ("completed", "diverged")  # a re-run keeps these: diverging again would teach nothing new
STATUSES = ("completed", "failed", "diverged")


def read_record(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def thread_budget() -> int | None:
    """Threads for one job when the launcher runs ``n_jobs`` jobs at once (joblib): the cores, shared."""
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    if not n_jobs:
        return None
    cores = os.cpu_count() or 1
    at_once = n_jobs if n_jobs > 0 else max(cores + 1 + n_jobs, 1)  # joblib's meaning of a negative n_jobs
    return max(cores // at_once, 1)


def run_job(cfg: DictConfig, train) -> dict:
    """``train(cfg)`` as one job of a sweep: never raises; returns the job's record."""
    out = Path(cfg.paths.output_dir)
    previous = read_record(out)
    if previous and previous["status"] in FINISHED and previous.get("overrides") == tracking.task_overrides():
        print(f"job {out.name}: {previous['status']} in an earlier run of this sweep, skipped", flush=True)
        return previous
    last = out / resume.LAST
    if cfg.ckpt_path is None and last.is_file():
        print(f"job {out.name}: resuming from {last}", flush=True)
        cfg.ckpt_path = str(last)
    threads = thread_budget()
    if threads:
        print(f"job {out.name}: {threads} threads", flush=True)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the job's DDP ranks inherit the same budget
    try:
        with distributed.job_scope():
            return train(cfg)
    except Exception as err:  # recorded and reported; the sweep goes on with its other jobs
        if isinstance(err, UserError | Diverged):  # their message says it all
            print(f"error: {err}", file=sys.stderr)
        else:
            traceback.print_exc()
        tracking.finish_wandb(1, "failed")
        record = read_record(out)
        if record is None or record.get("overrides") != tracking.task_overrides():
            record = {"status": "failed", "metrics": {}, "overrides": tracking.task_overrides()}
            tracking.write_json(out / "metrics.json", record)
        return record


def job_dirs(sweep_dir: Path) -> list[Path]:
    """A sweep's job folders (each holds Hydra's ``.hydra/``), in job order."""
    dirs = [p.parent for p in Path(sweep_dir).glob("*/.hydra")]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else p.name))


def summarize(sweep_dir: Path) -> dict:
    """Each job's status (a job without a record counts as failed) and the counts, into ``sweep.json``."""
    jobs = {d.name: (read_record(d) or {}).get("status", "failed") for d in job_dirs(sweep_dir)}
    counts = Counter(jobs.values())
    summary = {"jobs": jobs, **{s: counts.get(s, 0) for s in STATUSES}}
    tracking.write_json(Path(sweep_dir) / "sweep.json", summary)
    return summary


class SweepSummary(Callback):
    """Hydra callback: at the end of a sweep, say how many jobs completed, failed and diverged."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        s = summarize(sweep_dir)
        print(
            f"sweep {sweep_dir}: {len(s['jobs'])} jobs, {s['completed']} completed, {s['failed']} failed, "
            f"{s['diverged']} diverged",
            flush=True,
        )
