"""The composition root of a fused chunk: k seeds of one recipe built as one run (``seeds_per_process``).

Each copy is built by the calls that build its separate run (``build_module`` after seeding with its
seed), so its initial weights are those of ``seed=<s>`` bit for bit; the copies are then stacked into a
``SeedStack`` and trained by a ``FusedModule`` on a ``FusedDataModule``. What cannot be fused is refused
by ``check_fusable`` before any work.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import EarlyStopping, StochasticWeightAveraging
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from recipelab import build
from recipelab.data import build_augmentation
from recipelab.data.fused import FusedDataModule
from recipelab.data.shards import planned_world_size
from recipelab.errors import UserError
from recipelab.models.seed_stack import SeedStack
from recipelab.training import RecipeModule, quiet
from recipelab.training.copy_checkpoints import CopyCheckpoints, CopyMembers
from recipelab.training.copy_stopping import CopyEarlyStopping
from recipelab.training.fused import CopyDivergence, FusedModule, stacked_groups
from recipelab.training.reliability import ModelCheckpoint, StopOnDivergence

# callbacks that act on the chunk as a whole and mean the same for each copy; any other is refused unless
# its class says ``fusable = True``
CHUNK_CALLBACKS = (
    "recipelab.training.reliability.ModelCheckpoint",  # the monitored one and members become per copy
    "recipelab.training.reliability.StopOnDivergence",
    "recipelab.training.reliability.RandomStateCheckpoint",
    "recipelab.training.reliability.GracefulStop",
    "recipelab.training.reliability.ValidationHistory",
    "recipelab.training.averaging.EMA",  # elementwise on the stacked tensors: each copy its own average
    "recipelab.data.preview.AugmentationPreview",
    "lightning.pytorch.callbacks.LearningRateMonitor",
    "lightning.pytorch.callbacks.Timer",
    "lightning.pytorch.callbacks.RichProgressBar",
    "lightning.pytorch.callbacks.TQDMProgressBar",
)
NO_DDP = "DDP is not supported with fused seeds"


def check_fusable(cfg: DictConfig) -> None:
    """One line naming the key, for what k copies in one process cannot do (``seeds_per_process`` > 1)."""
    k = cfg.seeds_per_process
    why = f"seeds_per_process={k}"
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default={}) or {}
    refusals = [
        (
            "lr_find" in cfg,
            "python -m recipelab.lr_find",
            "the range test trains one network, and its suggestion is the recipe's, for every seed",
        ),
        (
            cfg.model._target_.endswith("TorchvisionClassifier"),
            f"model={choices.get('model', 'torchvision')}",
            "torchvision's networks are not built by the project's seeded factories",
        ),
        (
            cfg.optimizer._target_.endswith("lbfgs"),
            "optimizer=lbfgs",
            "its line search couples every parameter of the step; the copies' would mix",
        ),
        (
            cfg.scheduler.get("monitor") is not None,
            f"scheduler={choices.get('scheduler', 'plateau')}",
            "a schedule driven by a monitored metric would have one lr per copy",
        ),
        (
            cfg.trainer.get("gradient_clip_val") and cfg.trainer.get("gradient_clip_algorithm") != "value",
            "trainer.gradient_clip_val",
            "clipping by the norm over all parameters would mix the copies "
            "(trainer.gradient_clip_algorithm=value clips each value and is allowed)",
        ),
        (
            planned_world_size(cfg.trainer) not in (1, None),  # None: "auto", checked in build_fused_run
            "trainer.devices",
            NO_DDP,
        ),
        (cfg.get("seeds_per_trial", 1) > 1, "seeds_per_trial", "give a trial's seeds to seeds_per_process"),
        (bool(cfg.compile), "compile", "not supported with fused seeds"),
        (bool((cfg.get("whiten") or {}).get("kernel")), "whiten.kernel", "each copy would fit its own"),
    ]
    for refused, key, reason in refusals:
        if refused:
            raise UserError(f"{key}: cannot be used with {why}: {reason}")
    targets = {n: c.get("_target_") for n, c in cfg.callbacks.items() if c is not None and c.get("_target_")}
    stopping = [n for n, target in targets.items() if issubclass(get_class(target), EarlyStopping)]
    swa = [n for n, target in targets.items() if issubclass(get_class(target), StochasticWeightAveraging)]
    if stopping and swa:  # a copy stopped before SWA's last epoch would keep weights its separate run lacks
        raise UserError(f"callbacks.{stopping[0]}: early stopping with SWA cannot be used with {why}")
    for name, node in cfg.callbacks.items():
        target = node.get("_target_") if node is not None else None
        if _is_members(node) and (node.get("every_n_train_steps") or node.get("train_time_interval")):
            raise UserError(  # a copy's members are kept at epoch ends (CopyMembers)
                f"callbacks.{name}: ensemble members every so many steps or seconds cannot be kept with "
                f"{why} (every_n_epochs can; or train these seeds as separate jobs)"
            )
        if target not in (None, *CHUNK_CALLBACKS) and not _fusable(get_class(target)):
            raise UserError(
                f"callbacks.{name}: {target} cannot be used with {why} (a callback that acts on the chunk "
                "as a whole says so with a class attribute `fusable = True`)"
            )


def _fusable(cls: type) -> bool:
    """A callback class the chunk runs as it is (``fusable``) or per copy (early stopping)."""
    return getattr(cls, "fusable", False) or issubclass(cls, EarlyStopping)


def _is_members(node) -> bool:
    """A ModelCheckpoint node that keeps ensemble members (time points): no monitor, not last.ckpt."""
    return (
        node is not None
        and node.get("_target_") == CHUNK_CALLBACKS[0]
        and node.get("monitor") is None
        and node.get("filename") != "last"
    )


def copy_config(cfg: DictConfig, seed: int, out_dir: Path) -> DictConfig:
    """The config of the separate run ``seed=<seed>`` whose folder is ``out_dir``."""
    own = copy.deepcopy(cfg)
    with open_dict(own):
        own.seed, own.seeds_per_process = seed, 1
        own.paths.output_dir = str(out_dir)
    return own


@dataclass
class FusedRun(build.Run):
    """A chunk: the run that trains every copy, and each copy's own module (for its test) and config."""

    copies: list[RecipeModule]
    configs: list[DictConfig]


def build_fused_run(cfg: DictConfig, seeds: list[int], out_dirs: list[Path], **trainer_overrides) -> FusedRun:
    """The chunk of ``seeds``, copy i recorded in ``out_dirs[i]``; ``trainer_overrides``: as build_run's."""
    quiet.silence()
    quiet.warn_slow_bf16(cfg.trainer)
    configs = [copy_config(cfg, s, d) for s, d in zip(seeds, out_dirs, strict=True)]
    datamodule = build_fused_datamodule(cfg, seeds)
    copies = []
    for i, own in enumerate(configs):  # as build_run: seed, then the module (the datamodule draws nothing)
        L.seed_everything(own.seed, workers=False, verbose=False)
        copies.append(build.build_module(own, datamodule.batch_size, describe=i == 0))
    memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
    stack = SeedStack([c.model for c in copies], vectorize=cfg.get("seeds_vmap", False), memory_format=memory)
    groups = stacked_groups(copies[0].param_groups(copies[0].model), copies[0].model, stack)
    first = copies[0]
    module = FusedModule(
        model=stack,
        param_groups=lambda _: groups,
        optimizer=first.optimizer_factory,
        scheduler=first.scheduler_factory,
        scheduler_options=first.scheduler_options,
        regularizer=first.regularizer,
        num_classes=cfg.data.num_classes,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    loggers = build.build_loggers(cfg) if "logger" not in trainer_overrides else []
    # no W&B run of the chunk: each copy's is written after it, from its record (run.fused.write_wandb_run)
    loggers = [logger for logger in loggers if not isinstance(logger, WandbLogger)]
    callbacks = (
        [] if "callbacks" in trainer_overrides else build_chunk_callbacks(cfg, configs, out_dirs, loggers)
    )
    trainer = build.build_trainer(cfg, module, callbacks, loggers, **trainer_overrides)
    if trainer.world_size != 1:  # trainer.devices=auto on a machine of several devices
        raise UserError(
            f"trainer.devices={cfg.trainer.devices}: cannot be used with seeds_per_process={len(seeds)}: "
            f"{trainer.world_size} processes; {NO_DDP}"
        )
    return FusedRun(datamodule, module, trainer, callbacks, copies, configs)


def build_chunk_callbacks(cfg: DictConfig, configs: list[DictConfig], out_dirs: list[Path], loggers) -> list:
    """The run's callbacks, the monitored ModelCheckpoint replaced by one best checkpoint per copy, the
    members' ModelCheckpoints (time points) by members per copy, the divergence check and early stopping
    by one per copy; the chunk keeps its own last.ckpt (every copy), which resumes it."""
    callbacks = build.build_callbacks(cfg, logging=bool(loggers))
    chunk_last = [c for c in callbacks if isinstance(c, ModelCheckpoint) and c.filename == "last"]
    callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint) or c in chunk_last]
    callbacks = [CopyDivergence(c.check_every) if isinstance(c, StopOnDivergence) else c for c in callbacks]
    k = len(configs)
    callbacks = [CopyEarlyStopping(c, k) if isinstance(c, EarlyStopping) else c for c in callbacks]
    best = cfg.callbacks.get("model_checkpoint") or {}
    containers = [OmegaConf.to_container(c, resolve=True) for c in configs]
    folders = [Path(d) / "checkpoints" for d in out_dirs]
    monitor, mode = best.get("monitor", "val/acc"), best.get("mode", "max")
    members = [
        CopyMembers(
            instantiate(node),
            node.every_n_epochs or 1,
            [OmegaConf.select(own, f"callbacks.{name}.dirpath") for own in configs],
            containers,
        )
        for name, node in cfg.callbacks.items()
        if _is_members(node)
    ]
    return [*callbacks, CopyCheckpoints(folders, containers, monitor, mode), *members]


def build_fused_datamodule(cfg: DictConfig, seeds: list[int]) -> FusedDataModule:
    """The DataModule of ``cfg.data`` for k copies: copy i ordered and augmented by ``seeds[i]``."""
    ops, channels = cfg.augmentation.ops, cfg.data.in_channels
    augmentations = [build_augmentation(ops, seed=s, channels=channels) for s in seeds]
    data = instantiate(cfg.data, _partial_=True)
    datamodule = FusedDataModule(*data.args, **data.keywords, seeds=seeds, augmentations=augmentations)
    if cfg.data.batch_size == "full":
        datamodule.setup("fit")
        datamodule.batch_size = datamodule.num_train
    return datamodule
