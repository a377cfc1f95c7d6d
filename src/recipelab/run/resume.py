"""Continue a run in its own folder, from its last checkpoint, in its own W&B run.

``resume=<run folder>`` replays the run's saved overrides (``.hydra/overrides.yaml``; later overrides on
the command line win, e.g. a longer ``trainer.max_epochs``); ``ckpt_path=last`` picks the latest run of
this config's ``name`` that has ``checkpoints/last.ckpt``. Both become ``hydra.run.dir=<folder>`` and
``ckpt_path=<folder>/checkpoints/last.ckpt`` before Hydra starts, so Hydra writes into the same folder.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recipelab.errors import UserError
from recipelab.records.folder import LAST


def override_key(override: str) -> str:
    """The config key of a command-line override (``+a.b=1``, ``~a.b`` → ``a.b``)."""
    return override.split("=", 1)[0].lstrip("+~")


def _continue_in(folder: Path, overrides: list[str]) -> list[str]:
    kept = [o for o in overrides if override_key(o) not in ("ckpt_path", "hydra.run.dir")]
    return [*kept, f"hydra.run.dir='{folder}'", f"ckpt_path='{folder / LAST}'"]


def expand_resume(overrides: list[str]) -> list[str]:
    """``resume=<run folder>`` → the run's own overrides, then the others given, in that folder."""
    given = [o for o in overrides if override_key(o) == "resume"]
    if not given:
        return overrides
    folder = Path(given[-1].split("=", 1)[1].strip("'\"")).resolve()
    saved = folder / ".hydra" / "overrides.yaml"
    if not saved.is_file() or not (folder / LAST).is_file():
        raise UserError(f"resume={folder}: not a run folder with .hydra/overrides.yaml and {LAST}")
    previous = [str(o) for o in OmegaConf.load(saved)]
    return _continue_in(folder, [*previous, *(o for o in overrides if override_key(o) != "resume")])


def expand_last(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """``ckpt_path=last`` → the newest run folder of ``cfg.name`` holding a last checkpoint."""
    if cfg.get("ckpt_path") != "last":
        return overrides
    if any(override_key(o) == "hydra.run.dir" for o in overrides):
        return _continue_in(Path(cfg.hydra.run.dir).resolve(), overrides)
    runs = Path(cfg.paths.log_dir) / "runs"
    found = sorted(runs.glob(f"*/*_{cfg.name}/{LAST}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"ckpt_path=last: no run named {cfg.name!r} under {runs} has {LAST}")
    return _continue_in(found[-1].parents[1].resolve(), overrides)
