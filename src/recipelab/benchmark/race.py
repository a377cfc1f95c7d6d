"""Time to accuracy as airbench reports it: n seeds of one recipe, each a full training run, summarized
as the distribution of test accuracy and the time at which the seeds' mean validation accuracy crosses
fixed targets. The seeds run as one sweep of the template's own command, so its folder also feeds
``recipelab.report``."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from recipelab.records.folder import read_record

TARGETS = (0.93, 0.94)


def run_race(overrides: list[str], seeds: int, name: str, log_dir: str | None = None) -> list[dict]:
    """Train seeds 1..n of the recipe (``python -m recipelab.train -m``); the jobs' metrics.json."""
    sweep_dir = Path(log_dir or "logs") / "race" / name
    args = [
        sys.executable,
        "-m",
        "recipelab.train",
        "-m",
        *overrides,
        f"seed={','.join(str(s) for s in range(1, seeds + 1))}",
        f"name={name}",
        f"hydra.sweep.dir={sweep_dir}",
        "trainer.enable_progress_bar=false",
        *([f"paths.log_dir={log_dir}"] if log_dir else []),
    ]
    subprocess.run(args, check=True)
    records = [read_record(p.parent) for p in sorted(sweep_dir.glob("*/metrics.json"))]
    return [r for r in records if r.get("status") == "completed"]


def summarize(records: list[dict], targets=TARGETS, budget_s: float | None = None) -> dict:
    """The test accuracies' mean, std, min and max; training seconds (and, for a compiled recipe, its
    compile seconds and the training seconds without them, which the budget is held to); and, for each
    target, the first epoch at which the mean over seeds of val/acc reaches it, with the mean training
    time by then."""
    accs = [r["metrics"]["test/acc"] for r in records]
    times = [r["train_time_s"] for r in records]
    epochs = min(len(r["history"]) for r in records)
    curve = [
        {
            "epoch": e + 1,
            "val_acc": statistics.fmean(r["history"][e]["val/acc"] for r in records),
            "time_s": statistics.fmean(r["history"][e]["time_s"] for r in records),
        }
        for e in range(epochs)
    ]
    crossing = {}
    for target in targets:
        first = next((point for point in curve if point["val_acc"] >= target), None)
        crossing[f"{target:g}"] = (
            {"epoch": first["epoch"], "seconds": round(first["time_s"], 1)} if first else None
        )
    result = {
        "seeds": [r["seed"] for r in records],
        "test_acc": {
            "mean": statistics.fmean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "min": min(accs),
            "max": max(accs),
            "each": accs,
        },
        "train_time_s": {"mean": statistics.fmean(times), "max": max(times), "each": times},
        "mean_val_acc_reaches": crossing,
        "curve": curve,
    }
    compiling = [r.get("compile_s") for r in records]
    if any(c is not None for c in compiling):  # a compiled recipe: its warm-up reported apart
        times = [t - (c or 0.0) for t, c in zip(times, compiling, strict=True)]
        result["compile_s"] = compiling
        less = {"mean": statistics.fmean(times), "max": max(times), "each": times}
        result["train_time_less_compile_s"] = less
    if budget_s is not None:
        result["budget_s"] = budget_s
        result["all_within_budget"] = max(times) <= budget_s  # compile excluded
    return result
