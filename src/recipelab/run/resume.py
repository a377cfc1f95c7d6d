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
    if any(override_key(o) == "chunk_jobs" for o in previous):  # resumed alone, its seeds' records would
        raise UserError(  # go to a new sweep folder, the sweep's own jobs left interrupted
            f"resume={folder}: a chunk of a sweep's fused seeds; re-run the sweep's command, which resumes "
            "it in its jobs' folders"
        )
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


def check_checkpoint(ckpt, network=None) -> None:
    """``ckpt_path``: a file training can resume from, checked before Hydra makes (or reuses: resume=) the
    run folder, where a failure would overwrite a finished run's record and saved overrides. ``network``:
    the run's own (on the meta device), whose tensors the checkpoint's must match in name and shape (a
    single run's; a fused chunk's are stacked)."""
    if ckpt == "last":
        raise UserError("ckpt_path=last: resumes a single run (not a sweep's jobs); use resume=<run folder>")
    if ckpt is None:
        return
    if not Path(str(ckpt)).is_file():
        raise UserError(f"ckpt_path={ckpt}: no such checkpoint file (or `last`: this name's latest run)")
    from recipelab.results.checkpoint import load_checkpoint  # torch loads only here

    saved = load_checkpoint(ckpt, mmap=True)
    missing = [k for k in ("state_dict", "optimizer_states", "loops") if k not in saved]
    if missing:
        raise UserError(
            f"ckpt_path={ckpt}: training cannot resume from it (no {', '.join(missing)}): weights only, as "
            "a fused seed's are (seeds_per_process: re-run its sweep's command to resume the chunk)"
        )
    if network is None:
        return
    run = {f"model.{k}": tuple(v.shape) for k, v in network.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in saved["state_dict"].items() if k.startswith("model.")}
    differ = sorted(run.keys() ^ stored.keys()) or [k for k in sorted(run) if run[k] != stored[k]]
    if differ:
        key = differ[0]
        raise UserError(
            f"ckpt_path={ckpt}: its network is not the run's ({key}: {stored.get(key, 'absent')} in the "
            f"checkpoint, {run.get(key, 'absent')} in the run's); give the overrides it was trained with"
        )
