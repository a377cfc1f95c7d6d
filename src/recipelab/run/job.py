"""One training run from a composed config: build, fit, test, record (metrics.json, the W&B run)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import StochasticWeightAveraging, Timer
from omegaconf import DictConfig, OmegaConf

from recipelab.build import build_run
from recipelab.errors import Diverged, Interrupted
from recipelab.records import tracking
from recipelab.training import compiled


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
        "provenance": tracking.provenance(),
    }
    print_config(cfg)
    remove_stale_files(out)
    run = build_run(cfg)
    trainer = run.trainer
    timer = next((c for c in run.callbacks if isinstance(c, Timer)), None)
    exit_code = 1  # what the W&B run records: 0 completed, 128 + signal interrupted, 1 otherwise
    compiled_before = compiled.compile_seconds() if cfg.compile else 0.0  # a -m sweep's earlier jobs'
    try:
        trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)
        # the whole curve now: testing a checkpoint restores the callbacks' state of that checkpoint
        record["history"] = list(run.history.rows) if run.history is not None else []
        if run.stop is not None and run.stop.signum is not None:  # a signal after the last step's check
            raise Interrupted(run.stop.signum, trainer.global_step, trainer.current_epoch)
        # read before test: restoring the best checkpoint also restores the Timer's saved offset
        record["train_time_s"] = round(timer.time_elapsed("train"), 2) if timer else None
        if cfg.compile:  # compiling happens inside training's first steps: its seconds, reported apart
            record["compile_s"] = round(compiled.compile_seconds() - compiled_before, 2)
        last_val = _metrics(trainer, "val/")
        # the weights' sparsity at the last epoch's end (for the L1/L2 report); not the epoch's running
        # means (accuracy, loss), which a run resumed mid-epoch has only from its resume on
        last_train = _metrics(trainer, "train/sparsity")
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        swa = any(isinstance(c, StochasticWeightAveraging) for c in run.callbacks)
        if swa:  # SWA leaves the averaged weights in the model at the end: test and keep those
            best = str(out / "checkpoints" / "swa.ckpt")
            trainer.save_checkpoint(best)
        tested_val, record["tested_epoch"] = _validation_of(best, run, last_val, validated=not swa)
        if swa:  # the average as the last training epoch ends
            record["tested_epoch"] = trained_epochs(trainer, cfg.trainer.get("max_epochs")) - 1
        record["metrics"] = {**tested_val, **{f"last_{k}": v for k, v in (last_val | last_train).items()}}
        trainer.test(run.module, datamodule=run.datamodule, ckpt_path=best or None, verbose=False)
        record["metrics"].update(_metrics(trainer, "test/"))
        record["best_checkpoint"] = best
        record["status"], exit_code = "completed", 0
    except (Diverged, Interrupted) as err:
        record.update(stopped(err))
        exit_code = 128 + err.signum if isinstance(err, Interrupted) else 1
        raise
    finally:
        if run.stop is not None:
            run.stop.restore()
        record.update(
            epochs=trained_epochs(trainer, cfg.trainer.get("max_epochs")),
            steps=trainer.global_step,
            wall_time_s=round(time.time() - start, 2),
        )
        if "history" not in record:  # fit did not end: the curve up to where it stopped
            record["history"] = list(run.history.rows) if run.history is not None else []
        if trainer.global_rank == 0:  # under DDP: one record per job
            tracking.write_json(out / "metrics.json", record)
        tracking.finish_wandb(exit_code, record["status"])
    return record


def trained_epochs(trainer, max_epochs: int | None) -> int:
    """The epochs a run trained: Lightning's count, less the epoch Lightning's SWA adds after
    ``max_epochs`` for a network with batch norm (forward passes that recompute the average's statistics,
    then its validation, which the history keeps; no optimizer step). Counted, it made an SWA run's
    record say 5 epochs for 4 and the report's images/s a fifth too high."""
    epochs = trainer.current_epoch
    return min(epochs, max_epochs) if isinstance(max_epochs, int) and max_epochs > 0 else epochs


def stopped(err: Diverged | Interrupted) -> dict:
    """A record's status and its details, for a run that diverged or was interrupted."""
    if isinstance(err, Diverged):
        return {"status": "diverged", "diverged": {"step": err.step, "lr": err.lr, "loss": str(err.loss)}}
    return {
        "status": "interrupted",
        "interrupted": {"signal": err.name, "step": err.step, "epoch": err.epoch},
    }


def _validation_of(checkpoint: str, run, last_val: dict, validated: bool = True) -> tuple[dict, int | None]:
    """The validation metrics and the epoch (counted from 0) of the checkpoint that is tested: its row of
    the validation history (the same step), else a validation pass over it. ``validated=False``: weights
    the history's rows may not be of, though the step is (SWA's average: without batch norm it replaces
    the weights after the last validation). Without a checkpoint the last weights are tested: the last
    validation, no epoch."""
    if not checkpoint:
        return last_val, None
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    if not last_val:
        return last_val, saved["epoch"]
    # read before testing restores the checkpoint's callbacks' states
    row = run.history.row_at(saved["global_step"]) if run.history is not None and validated else None
    if row is not None:
        return {k: v for k, v in row.items() if k.startswith("val/")}, saved["epoch"]
    run.trainer.validate(run.module, datamodule=run.datamodule, ckpt_path=checkpoint, verbose=False)
    return _metrics(run.trainer, "val/"), saved["epoch"]


def _metrics(trainer, prefix: str) -> dict:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


def remove_stale_files(out: Path) -> None:
    """Temporary files a killed run left behind (a checkpoint or record written when the kill came)."""
    for stale in [*out.glob("checkpoints/**/.*.tmp-*"), *out.glob("*.tmp")]:
        stale.unlink(missing_ok=True)
