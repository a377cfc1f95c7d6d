"""The training entry: compose → validate → build → fit → test → record.

python -m recipelab.train [overrides]        one run, in logs/runs/<date>/<time>_<name>/
python -m recipelab.train -m seed=1,2,3      a sweep, in logs/multiruns/<date>/<time>_<name>/<job>/
python -m recipelab.train resume=<run folder> continue a killed run in its folder, from checkpoints/last.ckpt
"""

from __future__ import annotations

import logging
import math
import sys
import time
from functools import partial
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar, StochasticWeightAveraging, Timer
from omegaconf import DictConfig, OmegaConf

from recipelab import distributed, resume, sweep, tracking
from recipelab.config_check import preflight
from recipelab.data import build_augmentation
from recipelab.errors import UserError
from recipelab.models import NormSpec
from recipelab.training import RecipeModule, Regularizer, param_groups_weight_decay
from recipelab.training.optim import check_options, describe_param_groups, scaled_lr
from recipelab.training.reliability import Diverged

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
SCHEDULER_OPTIONS = ("interval", "frequency", "monitor")
log = logging.getLogger(__name__)


def build_param_groups(cfg: DictConfig, batch_size: int | None = None):
    """The param-group builder the module calls on its model; lr scaled for the effective batch size."""
    pg = cfg.param_groups
    lr = cfg.optimizer.lr
    if batch_size is not None:
        effective = batch_size * cfg.trainer.get("accumulate_grad_batches", 1)
        lr = scaled_lr(lr, effective, pg.lr_scaling, pg.base_batch_size)
    return partial(
        param_groups_weight_decay,
        no_decay_norm_and_bias=pg.no_decay_norm_and_bias,
        rules=OmegaConf.to_container(pg.rules),
        lr=lr,
        weight_decay=cfg.optimizer.get("weight_decay"),
    )


def build_model(cfg: DictConfig) -> torch.nn.Module:
    # Built objects go to the partial, not to instantiate, which would turn a dataclass into a config node.
    regularizer = Regularizer(**cfg.regularization)
    return instantiate(cfg.model, _partial_=True)(
        norm=NormSpec(**cfg.normalization), dropout=regularizer.dropout, dropconnect=regularizer.dropconnect
    )


def build_module(cfg: DictConfig, batch_size: int | None = None) -> RecipeModule:
    """``batch_size``: the resolved training batch size (``full`` → N), for the lr scaling rule."""
    model = build_model(cfg)
    regularizer = Regularizer(**cfg.regularization)
    scheduler = instantiate(cfg.scheduler.build) if cfg.scheduler.get("build") else None
    optimizer, param_groups = instantiate(cfg.optimizer), build_param_groups(cfg, batch_size)
    # built once here so that a bad rule or option fails before any work; the module builds its own
    log.info(describe_param_groups(optimizer(param_groups(model))))
    if cfg.compile:  # in place: parameter names (and so checkpoints) stay those of the plain model
        model.compile()
    return RecipeModule(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scheduler_options={
            k: cfg.scheduler[k] for k in SCHEDULER_OPTIONS if cfg.scheduler.get(k) is not None
        },
        param_groups=param_groups,
        label_smoothing=regularizer.label_smoothing,
        regularizer=regularizer,
        tta_flip=cfg.tta_flip,
        channels_last=cfg.channels_last,
        num_classes=cfg.model.num_classes,
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def build_datamodule(cfg: DictConfig):
    augmentation = build_augmentation(cfg.augmentation.ops, seed=cfg.seed)
    datamodule = instantiate(cfg.data, _partial_=True)(shuffle_seed=cfg.seed, augmentation=augmentation)
    datamodule.prepare_data()
    if cfg.data.batch_size == "full":  # batch gradient descent: one batch of all N training samples
        datamodule.setup("fit")
        datamodule.batch_size = datamodule.num_train
    return datamodule


def build_callbacks(cfg: DictConfig, logging: bool = True) -> list:
    """``logging``: whether the run has a logger (Lightning refuses a LearningRateMonitor without one)."""
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar callback without a bar
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not logging:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def build_loggers(cfg: DictConfig) -> list:
    loggers = []
    for conf in cfg.logger.values():
        if conf is None:
            continue
        if conf._target_.endswith("WandbLogger"):
            tracking.settle_wandb_mode()
            identity = tracking.wandb_identity(cfg.name, cfg.seed, cfg.tags)
            identity.update(resume.wandb_resume(Path(cfg.paths.output_dir)))
            config = {**OmegaConf.to_container(cfg, resolve=True), "choices": tracking.group_choices()}
            loggers.append(instantiate(conf, _partial_=True)(**identity, config=config))
        else:
            loggers.append(instantiate(conf))
    return loggers


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
    check_options(cfg.optimizer, cfg.data.batch_size)
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.batch_size)
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, logging=bool(loggers))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    datamodule.batch_size = distributed.per_process_batch(datamodule.batch_size, trainer.world_size)
    timer = next((c for c in callbacks if isinstance(c, Timer)), None)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        # read before test: restoring the best checkpoint also restores the Timer's saved offset
        record["train_time_s"] = round(timer.time_elapsed("train"), 2) if timer else None
        record["metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if any(isinstance(c, StochasticWeightAveraging) for c in callbacks):
            # SWA leaves the averaged weights in the model at the end: test and keep those
            best = str(out / "checkpoints" / "swa.ckpt")
            trainer.save_checkpoint(best)
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
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


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Returns the metric a sweeper optimizes (``optimized_metric``, test/acc by default; NaN if none)."""
    if tracking.is_multirun():  # a failed or diverged job is recorded and the sweep goes on
        record = sweep.run_job(cfg, train)
    else:
        try:
            record = train(cfg)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except Diverged as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(3)
    return record["metrics"].get(cfg.get("optimized_metric", "test/acc"), math.nan)


def cli() -> None:
    """Check the command line before Hydra makes a run folder, then run."""
    try:
        sys.argv = preflight(sys.argv, CONF_DIR)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
