"""Validate a run's config before Hydra makes its run folder, so a typo costs seconds and leaves nothing.

``preflight(argv)`` runs before ``hydra.main``: it composes the config with Hydra's compose API (Hydra's own
errors for unknown options and keys), resolves every value, then checks the values' types against the
chosen options' defaults, the ranges of plain values (``RULES``), the paths that must exist and, through
the composition root, the option objects that check their own values (each rule lives in one of those
places). Under ``-m`` it composes every job of a basic sweep (the first ``MAX_SWEEP_JOBS``, saying so).
Errors are ``UserError``s: one line, exit code 2.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from pathlib import Path

from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, MissingMandatoryValue, OmegaConf

from recipelab.errors import UserError, shown
from recipelab.run import resume
from recipelab.run.argv import config_dirs, split_argv
from recipelab.run.compose import compose_job
from recipelab.run.resume import override_key

MAX_SWEEP_JOBS = 1000  # compose at most this many jobs of a sweep (each takes a few ms)
_MISSING = object()


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _rule(test, allowed: str):
    """A range check that applies to numbers only: types are checked against the option's defaults."""
    return lambda v: None if not _number(v) or test(v) else allowed


# Ranges of plain values that no object of the project checks (the optimizer's, the trainer's): glob
# patterns over dotted keys (list items by index), every matching rule applies. The values of
# normalization, regularization, augmentation, model and data sizes are checked by the objects that use
# them (build.check_parts).
RULES = {
    "optimizer.lr": _rule(lambda v: v > 0, "> 0"),
    "optimizer.weight_decay": _rule(lambda v: v >= 0, ">= 0"),
    "optimizer.momentum": _rule(lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer.eps": _rule(lambda v: v > 0, "> 0"),
    "optimizer.betas.*": _rule(lambda v: 0 <= v < 1, "in [0, 1)"),
    "data.batch_size": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1 or 'full'"),
    "data.eval_batch_size": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "data.train_size": _rule(lambda v: v >= 1 and v == int(v), "null or an integer >= 1"),
    # null too: Lightning would train by trainer.max_steps alone, before it counts an epoch's batches
    "trainer.max_epochs": lambda v: None if _number(v) and v >= 1 and v == int(v) else "an integer >= 1",
    "seed": _rule(lambda v: 0 <= v < 2**32 and v == int(v), "an integer in [0, 2^32) (numpy's seeds)"),
    "trainer.accumulate_grad_batches": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "trainer.gradient_clip_val": _rule(lambda v: v >= 0, "null or >= 0"),
    "scheduler.build.pct_start": _rule(lambda v: 0 < v < 1, "in (0, 1)"),
    "scheduler.frequency": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "callbacks.*.every_n_train_steps": _rule(lambda v: v >= 0, "null or an integer >= 0"),
    "callbacks.progress_bar.every_n_batches": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "tta_shift": _rule(lambda v: v >= 0 and v == int(v), "an integer >= 0 (pixels)"),
}
# The groups a run is built from: conf/train.yaml's defaults that choose an option (tests/test_config_check.py
# keeps the two equal). Removing one (``~optimizer``) would leave the run nothing to build that part from.
RUN_GROUPS = (
    "data", "augmentation", "model", "optimizer", "scheduler", "normalization", "regularization", "trainer",
    "logger", "callbacks", "paths", "hydra",
)  # fmt: skip
SPECIAL_VALUES = {"data.batch_size": ("full",)}  # values a key takes besides those of its default's type
# types a key takes besides its default's, checked where it is used: one depth, or one per stage (the model
# checks the length); Lightning's devices [0, 1], "0,1", "auto" (data.shards.planned_world_size)
OTHER_TYPES = {"model.depth": ("a list",), "trainer.devices": ("a list", "a string")}


def preflight(argv: list[str], conf_dir: str, config_name: str = "train") -> list[str]:
    """Check the command line ``argv`` (sys.argv); returns it with ``resume=``/``ckpt_path=last`` expanded."""
    flags, overrides = split_argv(argv[1:])
    if {"-h", "--help", "--hydra-help", "--info", "-i", "--shell-completion", "-sc"} & set(flags):
        return argv
    overrides = resume.expand_resume(overrides)
    composing = [*config_dirs(flags), *overrides]
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        if "-m" in flags or "--multirun" in flags:
            check_sweep(composing, config_name)
        else:
            cfg, defaults = compose_job(composing, config_name)
            expanded = resume.expand_last(cfg, composing)
            if expanded != composing:
                cfg, defaults = compose_job(expanded, config_name)
            check(cfg, defaults, expanded)
            overrides = expanded[len(composing) - len(overrides) :]
    return [argv[0], *flags, *overrides]


def check_sweep(overrides: list[str], config_name: str = "train") -> None:
    """Every job of the sweep: its composition (keys, options) and its values. As in Hydra's basic
    sweeper, a key given on the command line replaces the config's sweep list for it."""
    base = [o for o in overrides if not _is_sweep(o)]
    composed: dict = {}  # the jobs' defaults, by their group overrides
    cfg, defaults = compose_job(base, config_name, composed)
    given = {override_key(o) for o in overrides if "=" in o}
    params = {k: v for k, v in (cfg.hydra.sweeper.get("params") or {}).items() if k not in given}
    swept = [f"{k}={v}" for k, v in params.items()] + [o for o in overrides if _is_sweep(o)]
    _check_sweep_keys(cfg, swept)
    if not cfg.hydra.sweeper._target_.endswith("BasicSweeper"):
        check(cfg, defaults, base)  # other sweepers choose values as they go: the base must hold
        return
    try:
        parsed = OverridesParser.create().parse_overrides(swept)
    except Exception as err:
        raise UserError(" ".join(str(err).split())) from None
    choices = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line]
        for o in parsed
    ]
    jobs = itertools.product(*choices)
    for job in itertools.islice(jobs, MAX_SWEEP_JOBS):
        check(*compose_job([*base, *job], config_name, composed), [*base, *job])
    if next(jobs, None) is not None:
        print(
            f"preflight: checked the first {MAX_SWEEP_JOBS} jobs of the sweep; "
            "the others are checked as they start"
        )


def _is_sweep(override: str) -> bool:
    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except Exception:  # a grammar error: composing reports it
        return False
    return parsed.is_sweep_override()


def _check_sweep_keys(cfg: DictConfig, swept: list[str]) -> None:
    groups = set(cfg.hydra.runtime.choices)
    for override in swept:
        key = override_key(override)
        if key not in groups and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            raise UserError(f"sweep {override}: no such key in the config ({key})")


def check(cfg: DictConfig, defaults: DictConfig, overrides: list[str]) -> None:
    """Raise UserError for the first bad value of a composed config (with its hydra node); ``defaults``:
    the config before the value overrides (``compose_job``)."""
    from recipelab.build import build_param_groups, check_parts  # torch and the parts load only here

    if cfg.hydra.sweeper.get("params"):
        _check_sweep_keys(cfg, [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()])
    for override in overrides:
        if override.startswith("~") and (group := override_key(override)) in RUN_GROUPS:
            raise UserError(f"{override}: a run needs one {group} option; choose one ({group}=<option>)")
    _check_types(cfg, defaults, overrides)
    for key, value in _leaves(cfg):
        for pattern, rule in RULES.items():
            if fnmatch.fnmatchcase(key, pattern) and (allowed := rule(value)):
                raise UserError(f"{key}={'null' if value is None else value}: must be {allowed}")
        if _number(value) and not math.isfinite(value):
            raise UserError(f"{key}={value}: must be a finite number")
        if key.endswith("._target_"):
            _check_importable(key, value)
    # the launcher's values, typed by Hydra's plugin: launcher=slurm's tasks_per_node is trainer.devices
    # (an int: SLURM numbers a job's GPUs itself; a list or 'auto' failed as Hydra built the launcher)
    list(_leaves(cfg.hydra.launcher, "hydra.launcher."))
    _check_paths(cfg)
    model = check_parts(cfg)
    resume.check_checkpoint(cfg.get("ckpt_path"), model if cfg.get("seeds_per_process", 1) == 1 else None)
    # the optimizer and the schedule built on the model's meta-device parameters: an argument the class does
    # not take (+optimizer.momentum=0.9 with adam) is found here, not after the run folder is made
    optimizer = _built(
        "optimizer", cfg, overrides, lambda: instantiate(cfg.optimizer)(build_param_groups(cfg)(model))
    )
    if cfg.scheduler.get("build"):
        build = instantiate(cfg.scheduler.build)
        _built("scheduler", cfg, overrides, lambda: build(optimizer, total_steps=100, steps_per_epoch=10))


def _built(group: str, cfg: DictConfig, overrides: list[str], build):
    """``build()``, its error one line naming the group as given (``optimizer=[sgd,adam]``) or as chosen."""
    try:
        return build()
    except UserError:
        raise
    except Exception as err:
        given = [o for o in overrides if override_key(o) == group]
        named = given[-1] if given else f"{group}={cfg.hydra.runtime.choices.get(group)}"
        raise UserError(f"{named}: cannot be built ({' '.join(str(err).split())[:200]})") from None


def _check_importable(key: str, target) -> None:
    """A ``_target_`` names something that can be imported (the job would fail on it after its folder)."""
    try:
        get_object(str(target))
    except Exception as err:
        raise UserError(f"{key}={target}: cannot be imported ({' '.join(str(err).split())[:200]})") from None


def _check_types(cfg: DictConfig, defaults: DictConfig, overrides: list[str]) -> None:
    """A value set on the command line must have the type of the chosen option's default."""
    groups = set(cfg.hydra.runtime.choices)
    keys = {override_key(o) for o in overrides if "=" in o}
    values = [k for k in keys if k not in groups and not k.startswith("hydra.")]
    for key in sorted(values):
        default = OmegaConf.select(defaults, key, default=None, throw_on_resolution_failure=False)
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        expected = _type_name(default)
        if default is None or value is None or _type_name(value) in (expected, *OTHER_TYPES.get(key, ())):
            continue
        if value in SPECIAL_VALUES.get(key, ()) or (expected == "a number" and isinstance(value, int)):
            continue
        raise UserError(f"{key}={shown(value)}: must be {expected} (the default is {shown(default)})")


TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", ListConfig | list: "a list"}


def _type_name(v) -> str:
    mapping = "a mapping" if isinstance(v, DictConfig | dict) else "a string"
    return next((name for kind, name in TYPE_NAMES.items() if isinstance(v, kind)), mapping)


def _leaves(node, prefix: str = ""):
    for key in node.keys() if isinstance(node, DictConfig) else range(len(node)):
        if not prefix and key == "hydra":
            continue
        try:
            value = node[key]
        except MissingMandatoryValue:
            raise UserError(f"{prefix}{key}: has no value (???): set it, {prefix}{key}=<value>") from None
        except Exception as err:  # an interpolation that does not resolve, a resolver that fails
            raise UserError(f"{prefix}{key}: does not resolve ({str(err).splitlines()[0]})") from None
        if isinstance(value, DictConfig | ListConfig):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _check_paths(cfg: DictConfig) -> None:
    root = OmegaConf.select(cfg, "data.root")
    if root is not None and not Path(str(root)).is_dir():
        raise UserError(f"data.root={root}: no such folder (null: the dataset's own search)")
