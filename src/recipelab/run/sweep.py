"""Sweep jobs that survive failures, skip what is done, resume what was interrupted, and count at the end.

A Hydra sweep re-raises the first failed job's error after its batch and never reaches the end of the
sweep; here a job that fails is recorded (``metrics.json`` status ``failed``, its W&B run marked failed)
and returns, so the other jobs run. Re-running a sweep into its folder (``hydra.sweep.dir=<folder>``)
skips the jobs whose ``metrics.json`` says they finished with the same overrides, and resumes the others
from their ``checkpoints/last.ckpt``. A job folder that holds another recipe (other overrides) is never
resumed or overwritten: Hydra writes each job's ``.hydra/`` before the job starts, so the sweep keeps a
copy of every job's ``.hydra/`` from before (``.hydra-previous/``), compares, and puts it back. An
interrupted job (SIGINT, SIGTERM) stops the sweep; re-running it resumes that job.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from recipelab.cli import report_error
from recipelab.errors import Interrupted
from recipelab.records import tracking
from recipelab.records.folder import job_dirs, read_record, recipe_overrides
from recipelab.records.summary import sweep_lines
from recipelab.run import distributed, resume

FINISHED = ("completed", "diverged")  # a re-run keeps these: diverging again would teach nothing new
STATUSES = ("completed", "failed", "diverged", "interrupted", "refused")
PREVIOUS = ".hydra-previous"  # a job's .hydra/ as it was before this run of the sweep
REFUSED = "refused"  # <sweep>/refused/<job>.json: jobs whose folder holds another recipe


def thread_budget() -> int | None:
    """Threads for one job when the launcher runs ``n_jobs`` jobs at once (joblib): the cores, shared."""
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    if not n_jobs:
        return None
    cores = os.cpu_count() or 1
    at_once = n_jobs if n_jobs > 0 else max(cores + 1 + n_jobs, 1)  # joblib's meaning of a negative n_jobs
    return max(cores // at_once, 1)


def previous_overrides(job_dir: Path) -> list[str] | None:
    """The overrides this job folder was made with, before this run of the sweep (None: a new folder)."""
    saved = job_dir / PREVIOUS / "overrides.yaml"
    return recipe_overrides(OmegaConf.load(saved)) if saved.is_file() else None


def refuse(out: Path, before: list[str], now: list[str]) -> dict:
    """Put the folder's own .hydra/ back and note the refusal for the summary; nothing else is touched."""
    shutil.rmtree(out / ".hydra", ignore_errors=True)
    shutil.copytree(out / PREVIOUS, out / ".hydra")
    note = {"status": REFUSED, "job": out.name, "holds": before, "asked": now, "metrics": {}}
    (out.parent / REFUSED).mkdir(exist_ok=True)
    tracking.write_json(out.parent / REFUSED / f"{out.name}.json", note)
    print(
        f"error: job {out.name}: its folder holds another recipe ({' '.join(before) or 'no overrides'}), "
        f"not {' '.join(now) or 'no overrides'}: neither resumed nor overwritten (use another sweep folder)",
        file=sys.stderr,
        flush=True,
    )
    return note


def run_job(cfg: DictConfig, train) -> dict:
    """``train(cfg)`` as one job of a sweep: never raises but for an interrupt; returns the job's record."""
    out = Path(cfg.paths.output_dir)
    now, before = tracking.task_overrides(), previous_overrides(out)
    if before is not None and before != now:
        return refuse(out, before, now)
    previous = read_record(out)
    if previous and previous["status"] in FINISHED and previous.get("overrides") == now:
        print(f"job {out.name}: {previous['status']} in an earlier run of this sweep, skipped", flush=True)
        return previous
    last = out / resume.LAST
    if cfg.ckpt_path is None and before is not None and last.is_file():
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
    except Interrupted:
        raise  # recorded by the job; the sweep stops here and a re-run resumes this job
    except Exception as err:  # recorded and reported; the sweep goes on with its other jobs
        report_error(err)  # a known error's one line, else the traceback: on stderr and in train.log
        tracking.finish_wandb(1, "failed")
        record = read_record(out)
        if record is None or record.get("overrides") != tracking.task_overrides():
            record = {"status": "failed", "metrics": {}, "overrides": tracking.task_overrides()}
            tracking.write_json(out / "metrics.json", record)
        return record


def job_records(sweep_dir: Path) -> dict[str, dict]:
    """Each job's record, in job order: a job without one counts as failed, a refused job holds its note."""
    records = {d.name: read_record(d) or {"status": "failed"} for d in job_dirs(sweep_dir)}
    records.update({p.stem: json.loads(p.read_text()) for p in (Path(sweep_dir) / REFUSED).glob("*.json")})
    return records


def summarize(sweep_dir: Path, records: dict[str, dict]) -> dict:
    """Each job's status and the counts, into ``sweep.json``."""
    jobs = {name: record["status"] for name, record in records.items()}
    counts = Counter(jobs.values())
    summary = {"jobs": jobs, **{s: counts.get(s, 0) for s in STATUSES}}
    tracking.write_json(Path(sweep_dir) / "sweep.json", summary)
    return summary


class SweepSummary(Callback):
    """Hydra callback: before a sweep, keep each existing job's .hydra/ (see ``run_job``); at its end, say
    how many jobs completed, failed, diverged, were interrupted or refused, in a table of the jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        shutil.rmtree(sweep_dir / REFUSED, ignore_errors=True)
        for job in job_dirs(sweep_dir):
            shutil.rmtree(job / PREVIOUS, ignore_errors=True)
            shutil.copytree(job / ".hydra", job / PREVIOUS)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        for job in job_dirs(sweep_dir):
            shutil.rmtree(job / PREVIOUS, ignore_errors=True)
        records = job_records(sweep_dir)
        s = summarize(sweep_dir, records)
        counts = {k: s[k] for k in STATUSES if s[k] or k in FINISHED + ("failed",)}
        # printed only: Hydra's log file handler still writes the last job's train.log here
        print("\n".join(sweep_lines(sweep_dir, records, counts)), flush=True)
