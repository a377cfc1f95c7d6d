"""A result run in W&B (evaluate, ensemble, report): the project's name read once, from its logger config."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from omegaconf import OmegaConf

from recipelab.records import tracking  # sets W&B's offline default before wandb is imported
from recipelab.records.folder import CONF_DIR


@cache
def project() -> str:
    return OmegaConf.load(Path(CONF_DIR) / "logger" / "wandb.yaml").wandb.project


def log_result(job_type: str, group: str, out_dir, config: dict, logs: dict, summary: dict, name=None):
    """One W&B run of ``job_type`` in ``group``, under ``out_dir``; ``logs`` may hold ``wandb.Table``
    and ``wandb.Image`` values (built lazily: pass callables taking the wandb module)."""
    import wandb

    mode = tracking.settle_wandb_mode()  # passed on: wandb's process-wide settings may say otherwise
    run = wandb.init(
        project=project(),
        group=group,
        job_type=job_type,
        name=name,
        dir=str(out_dir),
        config=config,
        mode=mode,
    )
    try:
        run.log({k: v(wandb) if callable(v) else v for k, v in logs.items()})
        run.summary.update(summary)
    finally:
        run.finish()
