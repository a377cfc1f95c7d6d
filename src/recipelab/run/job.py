"""One training run from a composed config: build, fit, test, record (metrics.json, the W&B run)."""

from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch.callbacks import StochasticWeightAveraging, Timer
from omegaconf import DictConfig, OmegaConf

from recipelab.build import build_run
from recipelab.errors import Diverged
from recipelab.run import tracking


def print_config(cfg: DictConfig) -> None:
    from rich import print as rprint
    from rich.tree import Tree

    tree = Tree("config")
    for key, value in cfg.items():
        branch = tree.add(f"[bold]{key}")
        branch.add(OmegaConf.to_yaml(value).strip() if isinstance(value, DictConfig) else str(value))
    rprint(tree)


def train(cfg: DictConfig) -> dict:
    """Fit and test one recipe; returns the record written to metrics.json."""
    start = time.time()
    out = Path(cfg.paths.output_dir)
    record = {
        "name": cfg.name,
        "group": tracking.run_group(cfg.name),
        "seed": cfg.seed,
        "groups": tracking.group_choices(),
        "status": "failed",
        "metrics": {},
        "run_dir": str(out),
        "overrides": tracking.task_overrides(),
    }
    print_config(cfg)
    run = build_run(cfg)
    trainer = run.trainer
    timer = next((c for c in run.callbacks if isinstance(c, Timer)), None)
    try:
        trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)
        # read before test: restoring the best checkpoint also restores the Timer's saved offset
        record["train_time_s"] = round(timer.time_elapsed("train"), 2) if timer else None
        record["metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if any(isinstance(c, StochasticWeightAveraging) for c in run.callbacks):
            # SWA leaves the averaged weights in the model at the end: test and keep those
            best = str(out / "checkpoints" / "swa.ckpt")
            trainer.save_checkpoint(best)
        trainer.test(run.module, datamodule=run.datamodule, ckpt_path=best or None, verbose=False)
        record["metrics"].update(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        )
        record["best_checkpoint"] = best
        record["status"] = "completed"
    except Diverged as err:
        record.update(status="diverged", diverged={"step": err.step, "lr": err.lr, "loss": str(err.loss)})
        raise
    finally:
        record.update(
            epochs=trainer.current_epoch, steps=trainer.global_step, wall_time_s=round(time.time() - start, 2)
        )
        if trainer.global_rank == 0:  # under DDP: one record per job
            tracking.write_json(out / "metrics.json", record)
        tracking.finish_wandb(0 if record["status"] == "completed" else 1, record["status"])
    return record
