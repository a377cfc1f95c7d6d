"""Seeds fused against seeds as separate jobs (``python -m recipelab.bench --fused K``): one sweep of K
seeds run both ways on this machine, one after the other, each from the command line in a fresh process.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from recipelab.benchmark.runs import QUIET, compose_cfg
from recipelab.records.folder import read_record


def _sweep(folder: Path, overrides: list[str], k: int) -> float:
    """Seconds ``python -m recipelab.train -m`` takes for the sweep, from the command to its end; an
    error with the end of its log when a job of the sweep did not complete."""
    launched = time.time()
    args = [sys.executable, "-m", "recipelab.train", "-m", *overrides, *QUIET, f"hydra.sweep.dir={folder}"]
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    seconds = time.time() - launched
    statuses = [(read_record(folder / str(job)) or {}).get("status") for job in range(k)]
    if any(status != "completed" for status in statuses):
        tail = done.stderr[-3000:]
        raise RuntimeError(f"{folder.name}: jobs ended {statuses}; the sweep's log ends:\n{tail}")
    return seconds


def fused_vs_separate(overrides: list[str], k: int, epochs: int, workdir: Path) -> dict:
    """Wall time of K seeds × ``epochs`` trained as K jobs and as one fused chunk, and the training images
    per second of each (images of all seeds over the training seconds: one fused step against one plain
    step, validation included as each run does it)."""
    seeds = ",".join(str(s) for s in range(1, k + 1))
    common = [*overrides, f"seed={seeds}", f"trainer.max_epochs={epochs}", "logger=csv"]
    separate_s = _sweep(workdir / "separate", common, k)
    fused_s = _sweep(workdir / "fused", [*common, f"seeds_per_process={k}"], k)
    data = compose_cfg(overrides).data
    per_epoch = data.train_size or data.train_count - data.val_size  # training images an epoch
    result = {"seeds": k, "epochs": epochs, "recipe": overrides}
    for name, wall in (("separate", separate_s), ("fused", fused_s)):
        records = [read_record(workdir / name / str(job)) for job in range(k)]
        images = per_epoch * sum(r["epochs"] for r in records)  # every seed's training images
        # the separate jobs train one after another; the fused chunk's seeds share one training time
        train_s = (
            sum(r["train_time_s"] for r in records) if name == "separate" else records[0]["train_time_s"]
        )
        result[name] = {
            "wall_s": round(wall, 3),  # to the ms: wall_ratio stays what the two recorded walls give
            "train_s": round(train_s, 1),
            "train_img_s": round(images / train_s),
            "test_acc": [r["metrics"]["test/acc"] for r in records],
        }
    result["wall_ratio"] = round(fused_s / separate_s, 3)
    result["img_s_ratio"] = round(result["fused"]["train_img_s"] / result["separate"]["train_img_s"], 3)
    result["goal_wall_ratio"] = 0.75
    # the best wall ratio a chunk could reach by removing every second the jobs spend beyond training
    # while training no faster: below it, only faster training (the fused copies' steps) can go
    result["bound_wall_ratio_same_training"] = round(result["separate"]["train_s"] / separate_s, 3)
    return result
