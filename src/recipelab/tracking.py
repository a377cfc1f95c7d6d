"""What a run records about itself: group choices, the W&B run's identity, and metrics.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

# Offline unless the user says otherwise: these machines have no internet, and a user without an
# account must never wait on a login prompt. Set before wandb is imported anywhere.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def group_choices() -> dict[str, str]:
    """The chosen option of every config group of this project (Hydra's own groups left out)."""
    choices = HydraConfig.get().runtime.choices
    return {
        k: str(v) for k, v in choices.items() if v is not None and k != "hydra" and not k.startswith("hydra/")
    }


def task_overrides() -> list[str]:
    """This job's own overrides (a sweep job's chosen values among them): what makes it this job."""
    return list(HydraConfig.get().overrides.task)


def is_multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


def run_group(name: str) -> str:
    """The W&B group: the sweep (its folder's date, time and name) for a multirun job, else the run's name."""
    return sweep_group(HydraConfig.get().sweep.dir) if is_multirun() else name


def sweep_group(sweep_dir) -> str:
    """A sweep's W&B group: its folder's date and time-and-name (``logs/multiruns/<date>/<time>_<name>``)."""
    sweep = Path(sweep_dir)
    return f"{sweep.parent.name}_{sweep.name}"


def wandb_identity(name: str, seed: int, extra_tags=()) -> dict:
    """group, job_type, tags and run name for wandb.init: every group choice becomes a tag."""
    choices = group_choices()
    tags = [f"{group}:{option}" for group, option in sorted(choices.items())] + [f"seed:{seed}", *extra_tags]
    return {
        "group": run_group(name),
        "job_type": "train",
        "tags": tags,
        "name": Path(HydraConfig.get().runtime.output_dir).name,
    }


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees a half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def finish_wandb(exit_code: int, status: str | None = None) -> None:
    """End this job's W&B run (if any), so a sweep's next job opens its own; its summary gets ``status``."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            if status:
                wandb.run.summary["status"] = status
            wandb.finish(exit_code=exit_code)
