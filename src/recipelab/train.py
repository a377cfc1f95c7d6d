"""The training entry: compose → validate → build → fit → test → record.

python -m recipelab.train [overrides]        one run, in logs/runs/<date>/<time>_<name>/
python -m recipelab.train -m seed=1,2,3      a sweep, in logs/multiruns/<date>/<time>_<name>/<job>/
python -m recipelab.train resume=<run folder> continue a killed run in its folder, from checkpoints/last.ckpt
"""

from __future__ import annotations

import math
import statistics
from functools import partial

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from recipelab.cli import hydra_entry
from recipelab.records import summary, tracking
from recipelab.run import chunks, sweep
from recipelab.run.job import train
from recipelab.run.trial import train_seeds


def task(cfg: DictConfig) -> float:
    """Returns the metric a sweeper optimizes (``optimized_metric``, test/acc by default; NaN if none).
    In a sweep a failed or diverged job is recorded and the sweep goes on; with ``seeds_per_trial`` > 1 a
    job trains that many seeds and returns their mean (or IQM). A completed run ends with what it found
    (``records.summary``); any other ends with its one ``error:`` line."""
    if chunks.is_chunk(cfg):  # seeds trained fused: each one's record, as its own job would end
        records = chunks.run(cfg)
        for record in records:
            if record["status"] == "completed":
                summary.emit(summary.train_lines(record))
        return statistics.fmean(
            r["metrics"].get(cfg.get("optimized_metric", "test/acc"), math.nan) for r in records
        )
    job = partial(train_seeds, train=train) if cfg.get("seeds_per_trial", 1) > 1 else train
    record = sweep.run_job(cfg, job) if tracking.is_multirun() else job(cfg)
    if record["status"] == "completed" and rank_zero_only.rank == 0:  # DDP: one summary, by rank 0
        summary.emit(summary.train_lines(record))
    return record["metrics"].get(cfg.get("optimized_metric", "test/acc"), math.nan)


main = hydra_entry(task, "train")

if __name__ == "__main__":
    main()
