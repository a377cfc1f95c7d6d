"""The composition root: a composed config in, built parts out. The only place that instantiates a run.

Every entry that trains (train, lr_find, bench) calls ``build_run``; the results layer rebuilds a
checkpoint's network with ``build_model`` (after checking its stored config); validation asks
``check_parts`` to build the option objects that check their own values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from omegaconf import DictConfig, OmegaConf

from recipelab.data import InMemoryDataModule, build_augmentation
from recipelab.data.shards import per_process_batch, planned_world_size
from recipelab.errors import UserError
from recipelab.models import NormSpec
from recipelab.models.blocks import check_cpu_convolutions
from recipelab.models.norm import check_batch_of_one
from recipelab.models.whiten import Whitening, attach_whitening, dirac_init
from recipelab.records import tracking
from recipelab.training import (
    RecipeModule,
    Regularizer,
    compiled,
    lean_step,
    param_groups_weight_decay,
    quiet,
)
from recipelab.training.optim import describe_param_groups, scaled_lr
from recipelab.training.profiler import QuietProfiler, skip_default_hooks
from recipelab.training.reliability import GracefulStop, ValidationHistory

SCHEDULER_OPTIONS = ("interval", "frequency", "monitor")
log = logging.getLogger(__name__)


@dataclass
class Run:
    """What ``build_run`` assembles for one training run."""

    datamodule: InMemoryDataModule
    module: RecipeModule
    trainer: L.Trainer
    callbacks: list

    @property
    def stop(self) -> GracefulStop | None:
        """The callback that turns SIGINT/SIGTERM into a saved step and ``Interrupted`` (if configured)."""
        return next((c for c in self.callbacks if isinstance(c, GracefulStop)), None)

    @property
    def history(self) -> ValidationHistory | None:
        return next((c for c in self.callbacks if isinstance(c, ValidationHistory)), None)


def _checked(node: DictConfig):
    """``instantiate(node)`` for objects that check their own values: their UserError comes out as it is
    (Hydra wraps whatever a constructor raises in an InstantiationException)."""
    try:
        return instantiate(node)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise


def build_norm(cfg: DictConfig) -> NormSpec:
    return _checked(cfg.normalization)


def build_regularizer(cfg: DictConfig) -> Regularizer:
    return _checked(cfg.regularization)


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
        decoupled_weight_decay=pg.get("decoupled_weight_decay", False),
    )


def build_model(cfg: DictConfig, regularizer: Regularizer | None = None) -> torch.nn.Module:
    """The network of ``cfg.model`` with the chosen normalization, dropout and DropConnect."""
    regularizer = regularizer or build_regularizer(cfg)
    whiten = cfg.get("whiten") or {}
    whitening, extra = None, {}
    if whiten.get("kernel"):  # the network then takes the whitening layer's channels
        whitening = Whitening(cfg.data.in_channels, whiten.kernel, whiten.eps, whiten.frozen)
        extra["in_channels"] = whitening.out_channels
    # Built objects go to the partial, not to instantiate, which would turn a dataclass into a config node.
    model = instantiate(cfg.model, _partial_=True)(
        norm=build_norm(cfg), dropout=regularizer.dropout, dropconnect=regularizer.dropconnect, **extra
    )
    if cfg.get("dirac_init"):
        dirac_init(model)
    return attach_whitening(model, whitening) if whitening is not None else model


def build_module(cfg: DictConfig, batch_size: int | None = None, describe: bool = True) -> RecipeModule:
    """``batch_size``: the resolved training batch size (``full`` → N), for the lr scaling rule;
    ``describe``: log the parameter groups (a fused chunk's copies after the first share them)."""
    regularizer = build_regularizer(cfg)
    model = build_model(cfg, regularizer)
    scheduler = instantiate(cfg.scheduler.build) if cfg.scheduler.get("build") else None
    optimizer, param_groups = instantiate(cfg.optimizer), build_param_groups(cfg, batch_size)
    # built once here so that a bad rule or option fails before any work; the module builds its own
    built = optimizer(param_groups(model))
    if describe:
        log.info(describe_param_groups(built))
    mode = cfg.get("compile_mode", "default")
    if cfg.compile:  # in place: parameter names (and so checkpoints) stay those of the plain model
        compiled.check(cfg.optimizer._target_, mode, cfg.trainer.get("accelerator", "auto"))
        model.compile(mode=mode)
    return RecipeModule(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scheduler_options={
            k: cfg.scheduler[k] for k in SCHEDULER_OPTIONS if cfg.scheduler.get(k) is not None
        },
        param_groups=param_groups,
        regularizer=regularizer,
        tta_flip=cfg.tta_flip,
        tta_shift=cfg.get("tta_shift", 0),
        channels_last=cfg.channels_last,
        num_classes=cfg.data.num_classes,
        config=OmegaConf.to_container(cfg, resolve=True),
        compile_mode=mode if cfg.compile else None,
    )


def build_datamodule(cfg: DictConfig, augment: bool = True) -> InMemoryDataModule:
    """The DataModule of ``cfg.data``; ``augment=False`` leaves the training batches as they are."""
    ops, channels = cfg.augmentation.ops, cfg.data.in_channels
    augmentation = build_augmentation(ops, seed=cfg.seed, channels=channels) if augment else None
    datamodule = instantiate(cfg.data, _partial_=True)(shuffle_seed=cfg.seed, augmentation=augmentation)
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
    if cfg.trainer.get("enable_model_summary", True):  # in place of Lightning's (build_run turns it off)
        callbacks.append(quiet.ModelSummary())
    return callbacks


def build_loggers(cfg: DictConfig) -> list:
    loggers = []
    for conf in cfg.logger.values():
        if conf is None:
            continue
        if conf._target_.endswith("WandbLogger"):
            tracking.settle_wandb_mode()
            identity = tracking.wandb_identity(cfg.name, cfg.seed, cfg.tags)
            identity.update(tracking.wandb_resume(Path(cfg.paths.output_dir)))
            config = {**OmegaConf.to_container(cfg, resolve=True), "choices": tracking.group_choices()}
            logger = instantiate(conf, _partial_=True)(**identity, config=config)
            # Lightning passes wandb.init `anonymous` always; wandb warns that the setting has no effect
            logger._wandb_init.pop("anonymous", None)
            loggers.append(logger)
        else:
            loggers.append(instantiate(conf))
    return loggers


def build_run(cfg: DictConfig, lean: bool = True, **trainer_overrides) -> Run:
    """Seed, then data, module, loggers, callbacks and trainer of one run. ``trainer_overrides`` replace
    Trainer arguments (the lr finder runs without loggers or checkpoints, and ``lean=False``: on
    Lightning's automatic loop, which steps its schedule)."""
    quiet.silence()
    quiet.warn_slow_bf16(cfg.trainer)
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.batch_size)
    loggers = build_loggers(cfg) if "logger" not in trainer_overrides else []
    callbacks = build_callbacks(cfg, logging=bool(loggers)) if "callbacks" not in trainer_overrides else []
    trainer = build_trainer(cfg, module, callbacks, loggers, lean, **trainer_overrides)
    datamodule.batch_size = per_process_batch(datamodule.batch_size, trainer.world_size)
    return Run(datamodule, module, trainer, callbacks)


def build_trainer(cfg: DictConfig, module, callbacks: list, loggers: list, lean: bool = True, /, **overrides):
    """The Trainer of ``cfg.trainer`` with the run's callbacks and loggers, on the lean step (``lean``) or
    Lightning's automatic loop; ``overrides`` replace any of its arguments, those two too (the lr finder's).
    The model summary, if any, is among the callbacks (build_callbacks): Lightning must not add its own."""
    profiler = {} if cfg.trainer.get("profiler") is not None else {"profiler": QuietProfiler()}
    own = {"callbacks": callbacks, "logger": loggers or False, "enable_model_summary": False, **profiler}
    step = lean_step.make_lean(module, cfg) if lean else {}
    trainer = instantiate(cfg.trainer, **{**own, **step, **overrides})
    skip_default_hooks(trainer.callbacks)  # also those the Trainer added (its progress bar)
    return trainer


def check_parts(cfg: DictConfig) -> torch.nn.Module:
    """Build the objects that check their own values (normalization, regularization, augmentation), ask
    the model whether it can honour them, build it (on the meta device: no memory, no time) so that it
    checks its own values, and check the batch size against the training set; returns the meta model."""
    norm, regularizer = build_norm(cfg), build_regularizer(cfg)
    build_augmentation(OmegaConf.to_container(cfg.augmentation.ops), channels=cfg.data.in_channels)
    reason = get_class(cfg.model._target_).refuse(norm, regularizer.dropout, regularizer.dropconnect)
    if reason:
        option = OmegaConf.select(cfg, "hydra.runtime.choices.model", default=cfg.model._target_)
        raise UserError(f"model={option}: {reason}")
    with torch.device("meta"):  # the model's own checks of its values (depth, width...), without memory
        model = build_model(cfg, regularizer)
    world = planned_world_size(cfg.trainer) or 1  # "auto" devices: the machine decides, checked in build_run
    data = OmegaConf.to_container(cfg.data, resolve=True)
    smallest = InMemoryDataModule.check_sizes(**data, world_size=world)
    check_batch_of_one(model, cfg.data, smallest, world, synced=bool(cfg.trainer.get("sync_batchnorm")))
    check_cpu_convolutions(
        model, cfg.channels_last, cfg.trainer.get("accelerator"), cfg.trainer.get("precision")
    )
    if cfg.get("seeds_per_process", 1) > 1:
        from recipelab.build_fused import check_fusable  # the fused chunk's parts load only when asked

        check_fusable(cfg)
    return model
