"""A job's config composed for the preflight, with Hydra's errors as one line.

Hydra composes in two steps: the defaults list (the options the group overrides choose), then the value
overrides set on the result. The preflight needs both configs (a value's type is checked against the
option's default), and Hydra's compose API gives only the second, so it used to compose twice: ~0.12 s
each here, the largest part of the template's start-up. ``compose_job`` composes the defaults once and
applies the value overrides to a copy with Hydra's own override step (``ConfigLoaderImpl``'s, private:
Hydra has no public call for it); ``tests/test_compose.py`` compares the result with Hydra's compose.
The jobs of a sweep that differ only in values (seeds, rates) share their defaults' composition.
"""

from __future__ import annotations

import copy

from hydra import compose
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.defaults_list import Overrides
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict

from recipelab.errors import UserError


def compose_job(
    overrides: list[str], config_name: str = "train", cache: dict | None = None
) -> tuple[DictConfig, DictConfig]:
    """The job's config (with Hydra's node) and its defaults: the config before its value overrides (but
    for ``hydra.*``). ``cache``: defaults already composed, by their group overrides (a sweep's jobs)."""
    with _one_line(overrides):
        parsed = OverridesParser.create().parse_overrides(overrides)
        values = Overrides(GlobalHydra.instance().config_loader().repository, parsed).config_overrides
    # Hydra's own keys (hydra.searchpath: where options are found) compose with the options
    values = [o for o in values if not o.is_hydra_override()]
    groups = [o.input_line for o in parsed if o not in values]
    cache = {} if cache is None else cache
    if (key := (config_name, *groups)) not in cache:
        cache[key] = compose_checked(groups, config_name)
    defaults = cache[key]
    cfg = copy.deepcopy(defaults)
    OmegaConf.set_readonly(cfg.hydra, False)  # as Hydra's compose before its override step
    with _one_line(overrides):
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
    cfg.hydra.overrides.hydra = [o.input_line for o in parsed if o.is_hydra_override()]
    cfg.hydra.overrides.task = [o.input_line for o in parsed if not o.is_hydra_override()]
    HydraConfig.instance().set_config(cfg)  # `${hydra:...}` interpolations resolve as in the job
    return cfg, defaults


def compose_checked(overrides: list[str], config_name: str = "train") -> DictConfig:
    """Hydra's composition of ``overrides``, its run folder a placeholder so that every value resolves."""
    with _one_line(overrides):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = "<the run folder>"
    HydraConfig.instance().set_config(cfg)
    return cfg


class _one_line:
    """Hydra's composition errors as one ``UserError`` line that names the override."""

    def __init__(self, overrides: list[str]):
        self.overrides = overrides

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb) -> bool:
        if err is None or isinstance(err, UserError):
            return False
        if isinstance(err, MissingConfigException):
            missing = str(err.missing_cfg_file or "").replace("/", "=", 1) if err.options is not None else ""
            if missing:
                raise UserError(f"{missing}: no such option; choose from {sorted(err.options)}") from None
            raise UserError(" ".join(str(err).split("\nConfig search path")[0].split())) from None
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, ConfigCompositionException) and first.startswith("Could not override"):
            key = first.split("'")[1]
            value = next((o.split("=", 1)[1] for o in self.overrides if o.split("=", 1)[0] == key), "")
            raise UserError(f"{key}={value}: no such key (to add a new key write +{key}={value})") from None
        if isinstance(err, Exception):  # Hydra's override grammar and OmegaConf's merge errors
            raise UserError(" ".join(str(err).split())) from None
        return False
