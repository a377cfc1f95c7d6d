"""Validate a run's config before Hydra makes its run folder, so a typo costs seconds and leaves nothing.

``preflight(argv)`` runs before ``hydra.main``: it composes the config with Hydra's compose API (which
raises Hydra's own errors for unknown options and keys), then checks the values: their types against the
defaults of the chosen options, their ranges against ``RULES``, and the paths that must exist. Under
``-m`` it composes every job of a basic sweep. Errors are ``UserError``s: one line, exit code 2.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, ListConfig, OmegaConf

from recipelab import resume
from recipelab.errors import UserError
from recipelab.resume import override_key

FASHION_MNIST_TRAIN = 60_000  # images in the training split, before the validation split is taken out
MAX_SWEEP_JOBS = 1000  # compose at most this many jobs of a sweep (each takes a few ms)
_MISSING = object()


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _rule(test, allowed: str):
    """A range check that applies to numbers only: types are checked against the option's defaults."""
    return lambda v: None if not _number(v) or test(v) else allowed


# Glob patterns over dotted keys (list items by index). New options are covered by the patterns of
# their group; every matching rule applies.
RULES = {
    "optimizer.lr": _rule(lambda v: v > 0, "> 0"),
    "optimizer.weight_decay": _rule(lambda v: v >= 0, ">= 0"),
    "optimizer.momentum": _rule(lambda v: 0 <= v < 1, "in [0, 1)"),
    "optimizer.eps": _rule(lambda v: v > 0, "> 0"),
    "optimizer.betas.*": _rule(lambda v: 0 <= v < 1, "in [0, 1)"),
    "data.batch_size": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1 or 'full'"),
    "data.eval_batch_size": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "data.train_size": _rule(lambda v: v >= 1 and v == int(v), "null or an integer >= 1"),
    "data.val_size": _rule(lambda v: 0 < v < FASHION_MNIST_TRAIN, f"in [1, {FASHION_MNIST_TRAIN})"),
    "trainer.max_epochs": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "trainer.accumulate_grad_batches": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "trainer.gradient_clip_val": _rule(lambda v: v >= 0, "null or >= 0"),
    "augmentation.ops.*.p": _rule(lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "regularization.*": _rule(lambda v: v >= 0, ">= 0 (a penalty or a rate)"),
    "regularization.dropout": _rule(lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "regularization.label_smoothing": _rule(lambda v: 0 <= v < 1, "in [0, 1)"),
    "normalization.eps": _rule(lambda v: v > 0, "> 0"),
    "normalization.momentum": _rule(lambda v: 0 <= v <= 1, "in [0, 1]"),
    "normalization.groups": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "scheduler.build.pct_start": _rule(lambda v: 0 < v < 1, "in (0, 1)"),
    "scheduler.frequency": _rule(lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "callbacks.*.every_n_train_steps": _rule(lambda v: v >= 0, "null or an integer >= 0"),
}


def preflight(argv: list[str], conf_dir: str) -> list[str]:
    """Check the command line ``argv`` (sys.argv); returns it with ``resume=``/``ckpt_path=last`` expanded."""
    flags, overrides = _split_argv(argv[1:])
    if {"-h", "--help", "--hydra-help", "--info", "-i", "--shell-completion", "-sc"} & set(flags):
        return argv
    overrides = resume.expand_resume(overrides)
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        if "-m" in flags or "--multirun" in flags:
            check_sweep(overrides)
        else:
            cfg = _compose(overrides)
            expanded = resume.expand_last(cfg, overrides)
            check(cfg if expanded == overrides else _compose(expanded), expanded)
            overrides = expanded
    return [argv[0], *flags, *overrides]


def _split_argv(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's flags (and their values) apart from the overrides."""
    flags, overrides, it = [], [], iter(args)
    for arg in it:
        if arg.split("=")[0] in ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd"):
            raise UserError(f"{arg}: not supported (recipelab.train composes conf/train.yaml)")
        if arg.startswith("-"):
            flags.append(arg)
            if arg in ("--cfg", "-c", "--package", "-p"):  # the flags that take a value
                flags.append(next(it, ""))
        else:
            overrides.append(arg)
    return flags, overrides


def _compose(overrides: list[str]) -> DictConfig:
    try:
        return compose("train", overrides=overrides, return_hydra_config=True)
    except MissingConfigException as err:
        missing = str(err.missing_cfg_file or "").replace("/", "=", 1) if err.options is not None else ""
        if missing:
            raise UserError(f"{missing}: no such option; choose from {sorted(err.options)}") from None
        raise UserError(" ".join(str(err).split("\nConfig search path")[0].split())) from None
    except ConfigCompositionException as err:
        first = str(err).splitlines()[0]
        if first.startswith("Could not override"):
            key = first.split("'")[1]
            value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key), "")
            raise UserError(f"{key}={value}: no such key (to add a new key write +{key}={value})") from None
        raise UserError(" ".join(str(err).split())) from None
    except Exception as err:  # Hydra's override grammar and OmegaConf's merge errors
        raise UserError(" ".join(str(err).split())) from None


def check_sweep(overrides: list[str]) -> None:
    """Every job of the sweep: its composition (keys, options) and its values."""
    base = [o for o in overrides if not _is_sweep(o)]
    cfg = _compose(base)
    params = cfg.hydra.sweeper.get("params") or {}
    swept = [f"{k}={v}" for k, v in params.items()] + [o for o in overrides if _is_sweep(o)]
    _check_sweep_keys(cfg, swept)
    if not cfg.hydra.sweeper._target_.endswith("BasicSweeper"):
        check(cfg, base)  # other sweepers choose their values as they go: the base config must hold
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
    for job in itertools.islice(itertools.product(*choices), MAX_SWEEP_JOBS):
        check(_compose([*base, *job]), [*base, *job])


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


def check(cfg: DictConfig, overrides: list[str]) -> None:
    """Raise UserError for the first bad value of a composed config (with its hydra node)."""
    if cfg.hydra.sweeper.get("params"):
        _check_sweep_keys(cfg, [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()])
    _check_types(cfg, overrides)
    for key, value in _leaves(cfg):
        for pattern, rule in RULES.items():
            if fnmatch.fnmatchcase(key, pattern) and (allowed := rule(value)):
                raise UserError(f"{key}={value}: must be {allowed}")
        if _number(value) and not math.isfinite(value):
            raise UserError(f"{key}={value}: must be a finite number")
    _check_data(cfg)
    _check_paths(cfg)
    from recipelab.data import build_augmentation  # its own check of each op: names, probabilities, sizes

    build_augmentation(OmegaConf.to_container(cfg.augmentation.ops) if "augmentation" in cfg else None)


def _check_types(cfg: DictConfig, overrides: list[str]) -> None:
    """A value set on the command line must have the type of the chosen option's default."""
    groups = set(cfg.hydra.runtime.choices)
    keys = {override_key(o) for o in overrides if "=" in o}
    values = [k for k in keys if k not in groups and not k.startswith("hydra.")]
    if not values:
        return
    defaults = _compose([o for o in overrides if override_key(o) in groups or o.startswith("hydra.")])
    for key in sorted(values):
        default = OmegaConf.select(defaults, key, default=None, throw_on_resolution_failure=False)
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        expected = _type_name(default)
        if default is None or value is None or expected == _type_name(value):
            continue
        if expected == "a number" and _type_name(value) == "an integer":
            continue
        raise UserError(f"{key}={_show(value)}: must be {expected} (the default is {_show(default)})")


def _type_name(v) -> str:
    if isinstance(v, bool):
        return "true or false"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, ListConfig | list):
        return "a list"
    if isinstance(v, DictConfig | dict):
        return "a mapping"
    return "a string"


def _show(v) -> str:
    if isinstance(v, DictConfig | ListConfig):
        return OmegaConf.to_yaml(v).strip().replace("\n", " ")
    return repr(v)


def _leaves(node, prefix: str = ""):
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        if not prefix and key == "hydra":
            continue
        try:
            value = node[key]
        except Exception:  # interpolations into Hydra's runtime (the run folder) resolve only inside the job
            continue
        if isinstance(value, DictConfig | ListConfig):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _check_data(cfg: DictConfig) -> None:
    data = cfg.get("data")
    if data is None or not _number(data.get("batch_size")):
        return
    n_train = FASHION_MNIST_TRAIN - data.get("val_size", 0)
    if _number(data.get("train_size")):
        n_train = min(n_train, data.train_size)
    if data.batch_size > n_train:
        raise UserError(f"data.batch_size={data.batch_size}: must be at most the {n_train} training images")


def _check_paths(cfg: DictConfig) -> None:
    root = OmegaConf.select(cfg, "data.root")
    if root is not None and not Path(str(root)).is_dir():
        raise UserError(f"data.root={root}: no such folder (null: Debian's package, then a download)")
    ckpt = cfg.get("ckpt_path")
    if ckpt == "last":
        raise UserError("ckpt_path=last: resumes a single run (not a sweep's jobs); use resume=<run folder>")
    if ckpt is not None and not Path(str(ckpt)).is_file():
        raise UserError(f"ckpt_path={ckpt}: no such checkpoint file (or `last`: this name's latest run)")
