"""Seeds as a batch axis for the entries: which seeds a process trains fused, and where each one's job
folder is (``seeds_per_process=k``).

- One run (``python -m recipelab.train seeds_per_process=k seed=s``): seeds ``s … s + k − 1``, each in
  ``<run>/seed_<seed>/``, as ``seeds_per_trial`` lays out its seeds.
- A sweep (``-m``): jobs that differ only in ``seed`` are cut, in sweep order, into chunks of k; a chunk is
  one Hydra job in ``<sweep>/chunks/<first job>/`` (its fused checkpoints: what resumes it) that writes
  each seed's job folder, ``<sweep>/<job>/``, where the basic sweeper would have put it. A job with no
  chunk mates runs as an ordinary job. The sweep's re-run rules apply per seed: a seed that finished in an
  earlier run (fused or not) is skipped, a folder holding another recipe is refused.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from recipelab.errors import Diverged, Interrupted, UserError
from recipelab.records import tracking
from recipelab.records.folder import LAST, read_record
from recipelab.run import distributed
from recipelab.run.resume import override_key
from recipelab.run.sweep import FINISHED, previous_overrides, refuse


def chunk_jobs(jobs: list[list[str]], k: int) -> list[list[str]]:
    """The basic sweeper's jobs (each its override list, in job order) → the jobs to launch: chunks of up
    to k jobs that differ only in their seed, each one job with its seeds and job numbers; every launched
    job names its own folder, so that each seed's folder is the one its job number gives."""
    if k <= 1:
        return jobs
    groups: dict[tuple, list[int]] = {}
    for number, job in enumerate(jobs):
        groups.setdefault(tuple(o for o in job if override_key(o) != "seed"), []).append(number)
    launched = []
    for numbers in groups.values():
        for part in (numbers[i : i + k] for i in range(0, len(numbers), k)):
            first = jobs[part[0]]
            if len(part) == 1:
                launched.append((part[0], [*first, f"hydra.sweep.subdir={part[0]}"]))
                continue
            seeds = [next(o.split("=", 1)[1] for o in jobs[n] if override_key(o) == "seed") for n in part]
            chunk = [f"+chunk_seeds=[{','.join(seeds)}]", f"+chunk_jobs=[{','.join(map(str, part))}]"]
            launched.append((part[0], [*first, *chunk, f"hydra.sweep.subdir=chunks/{part[0]}"]))
    return [job for _, job in sorted(launched, key=lambda pair: pair[0])]


def is_chunk(cfg: DictConfig) -> bool:
    """Whether this process trains seeds fused: a sweep's chunk, or one run with seeds_per_process > 1."""
    return cfg.get("chunk_seeds") is not None or (
        cfg.get("seeds_per_process", 1) > 1 and not tracking.is_multirun()
    )


def run(cfg: DictConfig) -> list[dict]:
    """Train this process's seeds fused; returns every seed's record (also those skipped or refused)."""
    from recipelab.run.fused import (
        copy_overrides,
        train_fused,
    )  # the fused parts load only when used (~0.1 s)

    if cfg.get("chunk_seeds") is None:  # one run: its seeds in <run>/seed_<s>/
        out, k = Path(cfg.paths.output_dir), cfg.seeds_per_process
        return train_fused(cfg, [(s, out / f"seed_{s}") for s in range(cfg.seed, cfg.seed + k)])
    sweep_dir = Path(HydraConfig.get().sweep.dir)
    members = [(int(s), sweep_dir / str(j)) for s, j in zip(cfg.chunk_seeds, cfg.chunk_jobs, strict=True)]
    records, pending, now = [], [], tracking.task_overrides()
    for seed, folder in members:
        own = copy_overrides(now, seed)
        before, previous = previous_overrides(folder), read_record(folder)
        if before is not None and before != own:
            records.append(refuse(folder, before, own))
        elif previous and previous["status"] in FINISHED and previous.get("overrides") == own:
            print(
                f"job {folder.name}: {previous['status']} in an earlier run of this sweep, skipped",
                flush=True,
            )
            records.append(previous)
        else:
            pending.append((seed, folder))
    if not pending:
        return records
    last = Path(cfg.paths.output_dir) / LAST
    if cfg.ckpt_path is None and last.is_file() and len(pending) == len(members):
        print(f"chunk {', '.join(f.name for _, f in pending)}: resuming from {last}", flush=True)
        cfg.ckpt_path = str(last)
    try:
        with distributed.job_scope():
            return records + train_fused(cfg, pending)
    except Interrupted:
        raise  # recorded per seed; the sweep stops here and a re-run resumes this chunk
    except Exception as err:  # recorded per seed; the sweep goes on with its other jobs
        if isinstance(err, UserError | Diverged):
            print(f"error: {err}", file=sys.stderr)
        else:
            traceback.print_exc()
        return records + [read_record(folder) or {"status": "failed", "metrics": {}} for _, folder in pending]
