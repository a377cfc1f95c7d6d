"""A fused chunk as k ordinary runs (``seeds_per_process=k``): k seeds of one recipe trained in one
process, then each seed given its own job folder (``recipelab.run.chunks`` says which) with what its
separate run would leave: ``metrics.json`` (same keys and statuses), ``.hydra/`` (its config and
overrides, with its seed), ``checkpoints/`` (best and last), tested as its separate run is tested (the
same module class, the same test-time views). The chunk's own folder keeps the fused checkpoints that
resume it.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import StochasticWeightAveraging, Timer
from omegaconf import DictConfig, OmegaConf

from recipelab.build_fused import FusedRun, build_fused_run
from recipelab.errors import Interrupted
from recipelab.records import tracking
from recipelab.run.job import remove_stale_files, stopped, trained_epochs
from recipelab.run.resume import override_key
from recipelab.training.copy_checkpoints import CopyCheckpoints, copy_weights, save_copy


def copy_overrides(overrides: list[str], seed: int) -> list[str]:
    """The overrides of the separate run of ``seed``: the chunk's recipe overrides (``task_overrides``,
    which leave the chunk size out), its seed in place of the chunk's."""
    own = [f"seed={seed}" if override_key(o) == "seed" else o for o in overrides]
    return own if f"seed={seed}" in own else [*own, f"seed={seed}"]


def _own(values: dict, i: int) -> dict:
    """Copy ``i``'s entries (``<name>/copy<i>``) under the names its separate run logs them."""
    suffix = f"/copy{i}"
    return {k.removesuffix(suffix): v for k, v in values.items() if k.endswith(suffix)}


def copy_row(row: dict, i: int) -> dict:
    """Copy ``i``'s part of a validation-history row, under the names a separate run's row has."""
    return {k: v for k, v in row.items() if "/copy" not in k} | _own(row, i)


def copy_metrics(metrics: dict, prefix: str, i: int) -> dict:
    """Copy ``i``'s values among the trainer's metrics whose names start with ``prefix``."""
    return {k: float(v) for k, v in _own(metrics, i).items() if k.startswith(prefix)}


def train_fused(cfg: DictConfig, members: list[tuple[int, Path]]) -> list[dict]:
    """Fit the chunk of ``members`` (seed, job folder), then test and record each copy in its folder;
    returns the copies' records (their metrics.json). The chunk's own folder is ``paths.output_dir``."""
    start, out = time.time(), Path(cfg.paths.output_dir)
    seeds, dirs = [s for s, _ in members], [Path(d) for _, d in members]
    for folder in [out, *dirs]:
        remove_stale_files(folder)
    run = build_fused_run(cfg, seeds, dirs)
    overrides, groups, provenance = tracking.task_overrides(), tracking.group_choices(), tracking.provenance()
    records = [
        {
            "name": cfg.name,
            "group": tracking.run_group(cfg.name),
            "seed": s,
            "groups": groups,
            "status": "failed",
            "metrics": {},
            "run_dir": str(d),
            "overrides": copy_overrides(overrides, s),
            "provenance": provenance,
            "seeds_per_process": {"seeds": seeds, "chunk_dir": str(out)},
        }
        for s, d in zip(seeds, dirs, strict=True)
    ]
    trainer, module, exit_code = run.trainer, run.module, 1
    try:
        trainer.fit(module, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)
        if run.stop is not None and run.stop.signum is not None:
            raise Interrupted(run.stop.signum, trainer.global_step, trainer.current_epoch)
        timer = next((c for c in run.callbacks if isinstance(c, Timer)), None)
        train_time = round(timer.time_elapsed("train"), 2) if timer else None
        _test_copies(run, records, dict(trainer.callback_metrics), train_time)
        exit_code = 0
    except Interrupted as err:  # every copy saved at the same step; each job interrupted
        for record in records:
            record.update(stopped(err))
        exit_code = 128 + err.signum
        raise
    finally:  # a copy that diverged is recorded so, whatever ended the chunk (all diverged: Diverged)
        if run.stop is not None:
            run.stop.restore()
        rows = list(run.history.rows) if run.history is not None else []
        for i, (record, own) in enumerate(zip(records, run.configs, strict=True)):
            diverged, stop = module.diverged.get(i), module.stopped.get(i)  # where its separate run ended
            record["history"] = copy_history(rows, i, diverged, stop)
            record.update(
                epochs=trained_epochs(trainer, cfg.trainer.get("max_epochs")), steps=trainer.global_step
            )
            if diverged:
                record.update(status="diverged", diverged={k: diverged[k] for k in ("step", "lr", "loss")})
                record["epochs"], record["steps"] = diverged.get("found", (record["epochs"], record["steps"]))
            elif stop:
                record.update(epochs=stop["epoch"] + 1, steps=stop["step"])
            record["wall_time_s"] = round(time.time() - start, 2)
            write_copy(Path(record["run_dir"]), own, record)
            write_wandb_run(own, record, exit_code if record["status"] != "diverged" else 1)
    return records


def copy_history(rows: list[dict], i: int, diverged: dict | None, stopped: dict | None = None) -> list[dict]:
    """Copy ``i``'s validation history: up to the step it diverged at, or the validation early stopping
    stopped it after, if either happened (as its separate run's, which ends there)."""
    end = min(
        diverged["step"] - 1 if diverged else float("inf"), stopped["step"] if stopped else float("inf")
    )
    return [copy_row(r, i) for r in rows if r["step"] <= end]


def copy_tester(run: FusedRun) -> L.Trainer:
    """The Trainer that tests each copy: the chunk's device and precision, nothing else. The accelerator
    is named as the run's config names it: given the chunk Trainer's accelerator object, Lightning 2.6
    sets bf16-mixed autocast up for CUDA, so on the CPU each copy was tested in fp32 where its separate
    run tests in bf16 (test accuracies apart in the 4th digit from the same weights)."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = rank_zero.level
    rank_zero.setLevel(logging.WARNING)  # the device lines: the chunk's Trainer printed them already
    try:
        return L.Trainer(
            accelerator=run.configs[0].trainer.accelerator,
            devices=1,
            precision=run.trainer.precision_plugin.precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    finally:
        rank_zero.setLevel(level)


def _test_copies(run: FusedRun, records: list[dict], metrics: dict, train_time: float | None) -> None:
    """Each copy's best checkpoint, tested by the module its separate run would test it with."""
    best = next(c for c in run.callbacks if isinstance(c, CopyCheckpoints))
    tester = copy_tester(run)
    swa = any(isinstance(c, StochasticWeightAveraging) for c in run.callbacks)
    for i, (record, module) in enumerate(zip(records, run.copies, strict=True)):
        if i in run.module.diverged:
            continue
        last_val = copy_metrics(metrics, "val/", i)
        last = last_val | copy_metrics(metrics, "train/sparsity", i)
        path = best.best_paths[i]
        if swa:  # the chunk holds each copy's average: test and keep those, as the separate run does
            path = str(best.dirpaths[i] / "swa.ckpt")
            save_copy(run.trainer, run.module, i, best.configs[i], Path(path))
        if path:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            weights = {n.removeprefix("model."): t for n, t in saved["state_dict"].items()}
            epoch, step = saved["epoch"], saved["global_step"]
            if swa:  # as job.train: the average as the last training epoch ends
                epoch = trained_epochs(run.trainer, run.configs[i].trainer.get("max_epochs")) - 1
        else:  # no validation ranked a best checkpoint: the last weights, as job._validation_of
            weights, epoch, step = copy_weights(run.trainer, run.module, i), None, None
        module.model.load_state_dict(weights)
        if not path or not last_val:  # no checkpoint or no validation: the last one (or none), no pass
            row = last_val
        elif swa:  # as job._validation_of: the averaged weights validated
            tester.validate(module, datamodule=run.datamodule, verbose=False)
            row = {k: float(v) for k, v in tester.callback_metrics.items() if k.startswith("val/")}
        else:  # the validation of the tested checkpoint's step
            row = copy_row((run.history.row_at(step) if run.history else None) or {}, i)
        tester.test(module, datamodule=run.datamodule, verbose=False)
        tested = {k: float(v) for k, v in tester.callback_metrics.items() if k.startswith("test/")}
        record.update(
            train_time_s=train_time,
            tested_epoch=epoch,
            best_checkpoint=path,
            status="completed",
            metrics={
                **{k: v for k, v in row.items() if k.startswith("val/")},
                **{f"last_{k}": v for k, v in last.items()},
                **tested,
            },
        )


def write_copy(folder: Path, cfg: DictConfig, record: dict) -> None:
    """What a separate run leaves in its folder: ``.hydra/`` (its config, overrides and Hydra's settings)
    and ``metrics.json``."""
    hydra = folder / ".hydra"
    hydra.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, hydra / "config.yaml")
    OmegaConf.save(OmegaConf.create(record["overrides"]), hydra / "overrides.yaml")
    chunk_hydra = Path(HydraConfig.get().runtime.output_dir) / HydraConfig.get().output_subdir / "hydra.yaml"
    if chunk_hydra.is_file():
        shutil.copy(chunk_hydra, hydra / "hydra.yaml")
    tracking.write_json(folder / "metrics.json", record)


def write_wandb_run(cfg: DictConfig, record: dict, exit_code: int) -> None:
    """The copy's W&B run (if the recipe logs to W&B), as its separate run leaves one: in its folder and
    the sweep's group, its config and tags, each validation of its history at its step, and its record's
    metrics and status in the summary. Written after the chunk (a resumed chunk continues the same run)."""
    conf = next(
        (c for c in cfg.logger.values() if c is not None and c._target_.endswith("WandbLogger")), None
    )
    if conf is None:
        return
    import wandb

    folder = Path(record["run_dir"])
    identity = tracking.wandb_identity(cfg.name, cfg.seed, cfg.tags) | {"name": folder.name}
    config = {**OmegaConf.to_container(cfg, resolve=True), "choices": tracking.group_choices()}
    run = wandb.init(
        project=conf.project, dir=str(folder), config=config, **identity, **tracking.wandb_resume(folder)
    )
    for row in record["history"]:
        run.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])
    run.summary.update(record["metrics"])
    tracking.finish_wandb(exit_code, record["status"])
