"""Where a run's files are and how they are read: its record, overrides, checkpoints and history."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from recipelab.records.wandb_file import read_run, run_files

CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")  # the config root: conf/ beside src/
RECORD = "metrics.json"
LAST = Path("checkpoints") / "last.ckpt"


def read_record(run_dir) -> dict | None:
    """The run's ``metrics.json``, or None where the run never wrote one."""
    path = Path(run_dir) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def read_evaluation(run_dir) -> dict:
    """The metrics ``recipelab.evaluate`` wrote into the run folder (``evaluate.json``), or {}."""
    path = Path(run_dir) / "evaluate.json"
    return json.loads(path.read_text()).get("metrics", {}) if path.is_file() else {}


# keys that say how a run is executed, not what it trains: left out of the overrides that name a recipe
EXECUTION_KEYS = ("seeds_per_process", "chunk_seeds", "chunk_jobs")


def recipe_overrides(overrides) -> list[str]:
    """``overrides`` without the ``EXECUTION_KEYS``: a seed trained fused and the same seed trained alone
    are one recipe (their job folders pair, a sweep re-run recognizes either)."""
    return [str(o) for o in overrides if str(o).split("=", 1)[0].lstrip("+~") not in EXECUTION_KEYS]


def read_overrides(run_dir) -> dict[str, str]:
    """The run's command-line overrides (``.hydra/overrides.yaml``) that name its recipe, as key → value."""
    overrides = yaml.safe_load((Path(run_dir) / ".hydra" / "overrides.yaml").read_text()) or []
    return dict(o.split("=", 1) for o in recipe_overrides(overrides))


def job_dirs(sweep_dir) -> list[Path]:
    """A sweep's job folders (each holds Hydra's ``.hydra/``), in job order."""
    dirs = [p.parent for p in Path(sweep_dir).glob("*/.hydra")]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else p.name))


def is_run_dir(folder) -> bool:
    return (Path(folder) / "checkpoints").is_dir()


def best_checkpoint(run_dir) -> Path:
    """The checkpoint a run tested (its best, or SWA's), else its last; found in ``run_dir`` even when the
    folder was moved or copied since (the record holds absolute paths)."""
    record = read_record(run_dir) or {}
    if not record.get("best_checkpoint"):
        return Path(run_dir) / LAST
    best, recorded = Path(record["best_checkpoint"]), record.get("run_dir")
    if recorded and best.is_relative_to(recorded):
        return Path(run_dir) / best.relative_to(recorded)
    return best


def run_dir_of(checkpoint) -> Path | None:
    """The run folder a checkpoint lies in (``checkpoints/`` or ``checkpoints/members/`` below it)."""
    for folder in Path(checkpoint).resolve().parents[:3]:
        if (folder / RECORD).is_file() or (folder / ".hydra").is_dir():
            return folder
    return None


def group_of(checkpoint, default: str = "ensemble") -> str:
    """The W&B group of the run a checkpoint came from (recorded in its metrics.json)."""
    folder = run_dir_of(checkpoint)
    return (read_record(folder) or {}).get("group", default) if folder else default


def read_history(run_dir) -> list[dict]:
    """The rows holding val/acc, from the run's offline W&B run, else its CSV log."""
    runs = run_files(run_dir)
    if runs:
        return [h for h in read_run(runs[-1]).history if "val/acc" in h and "epoch" in h]
    logs = sorted(Path(run_dir).glob("csv/**/metrics.csv"))
    if logs:
        with logs[-1].open() as f:
            rows = [r for r in csv.DictReader(f) if r.get("val/acc")]
        return [{"epoch": int(r["epoch"]), "val/acc": float(r["val/acc"])} for r in rows]
    return []
