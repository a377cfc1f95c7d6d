"""The template's runs that the benchmark times, each in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from recipelab.records.folder import CONF_DIR, read_record
from recipelab.records.wandb_file import read_run, run_files

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=overrides)


def template_run(overrides: list[str], workdir: Path, bare: bool = False) -> dict:
    """`python -m recipelab.train` in a subprocess with an InterleavedTimer; its step times and start-up.
    ``bare``: Lightning's loop alone (`recipelab.benchmark.bare`) in place of the template's run."""
    timer_file = workdir / f"steps-{time.time_ns()}.json"
    if bare:
        args = [sys.executable, "-m", "recipelab.benchmark.bare", str(timer_file), *overrides]
    else:
        args = [
            sys.executable,
            "-m",
            "recipelab.train",
            f"paths.log_dir={workdir}",
            "+callbacks.step_timer._target_=recipelab.benchmark.plain.InterleavedTimer",
            f"+callbacks.step_timer.path={timer_file}",
            *overrides,
            *QUIET,
        ]
    launched = time.time()
    subprocess.run(args, check=True, capture_output=True, text=True)
    record = json.loads(timer_file.read_text())
    return {**record, "startup_s": record["first_step"] - launched}


def import_seconds(statement: str) -> float:
    """Seconds a fresh interpreter takes to run an import statement."""
    code = f"import time; t = time.time(); {statement}; print(time.time() - t)"
    return float(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    )


def time_to_accuracy(workdir: Path, target: float, overrides: list[str]) -> dict:
    launched = time.time()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "recipelab.train",
            f"paths.log_dir={workdir}",
            "name=bench_full",
            *overrides,
            *QUIET,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    total = time.time() - launched
    (run_dir,) = [p.parent for p in workdir.rglob("metrics.json") if "bench_full" in str(p)]
    metrics = read_record(run_dir)
    history = read_run(run_files(run_dir)[0]).history
    reached = [h["_runtime"] for h in history if h.get("val/acc", 0) >= target]
    return {
        "target_val_acc": target,
        "seconds_to_target": round(reached[0], 1) if reached else None,
        "test_acc": metrics["metrics"]["test/acc"],
        "train_time_s": metrics["train_time_s"],
        "command_wall_s": round(total, 1),
        "epochs": metrics["epochs"],
    }
