"""What a run records about itself: group choices, the W&B run's identity, and metrics.json."""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from recipelab.records.folder import recipe_overrides

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
    return recipe_overrides(HydraConfig.get().overrides.task)


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


def wandb_run_id(run_dir: Path) -> str | None:
    """The id of the W&B run already in this run folder (wandb names its folders ``*run-<time>-<id>``)."""
    runs = sorted((run_dir / "wandb").glob("*run-*-*"))
    return runs[0].name.rsplit("-", 1)[1] if runs else None


def wandb_resume(run_dir: Path) -> dict:
    """wandb.init arguments that continue the W&B run of this run folder, if it has one."""
    run_id = wandb_run_id(run_dir)
    return {"id": run_id, "resume": "allow"} if run_id else {}


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees a half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def finish_wandb(exit_code: int, status: str | None = None) -> None:
    """End this job's W&B run (if any), so a sweep's next job opens its own; its summary gets ``status``.
    An interrupted run is marked preempting (W&B shows it as preempted, not crashed)."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            if status:
                wandb.run.summary["status"] = status
            if status == "interrupted":
                wandb.run.mark_preempting()
            wandb.finish(exit_code=exit_code)


def settle_wandb_mode(timeout_s: float = 3.0) -> str:
    """Decide W&B's mode before the first ``wandb.init``: online only if its server answers within seconds.

    An unreachable server makes ``wandb.init`` retry for its 90-second ``init_timeout``, and after a failed
    online init an offline one can also hang (wandb issue 9865); so this falls back to offline with a
    warning, and the run can be uploaded later (``make sync``).
    """
    mode = os.environ.get("WANDB_MODE", "offline")
    if mode not in ("online", "run"):
        return mode
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    outcome: list = []

    def ask() -> None:  # any HTTP answer will do; in a thread, as DNS lookups ignore socket timeouts
        try:
            urllib.request.urlopen(url, timeout=timeout_s).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)
        except OSError as err:
            outcome.append(err)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if outcome[:1] == [None]:
        return mode
    reason = outcome[0] if outcome else f"no answer in {timeout_s:g} s"
    print(
        f"warning: W&B server {url} unreachable ({reason}): logging offline; upload later with `make sync`",
        file=sys.stderr,
    )
    os.environ["WANDB_MODE"] = "offline"
    return "offline"


@functools.cache
def provenance() -> dict:
    """What produced a run: the code's git commit (and whether the tree had uncommitted changes), the
    versions of the main packages, and the device, so results of different code or hardware stay apart."""
    import importlib.metadata
    import platform
    import subprocess

    import torch

    root = Path(__file__).resolve().parents[3]

    def git(*args) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    else:
        cpuinfo = Path("/proc/cpuinfo")
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        device = f"{names[0] if names else platform.processor() or 'CPU'} ({os.cpu_count()} cores)"
    versions = {}
    for package in ("torch", "lightning", "hydra-core", "recipelab"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "versions": versions,
        "device": device,
    }
