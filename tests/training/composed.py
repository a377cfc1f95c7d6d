"""The project's config composed as the training entry composes it (Hydra's compose API on conf/)."""

from __future__ import annotations

import lightning as L
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from tests.conftest import ROOT


def compose_train(*overrides: str) -> DictConfig:
    """The train config; outside a Hydra run there is no run folder, so paths.output_dir is a placeholder."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=["paths.output_dir=unused", *overrides])


def flat_config(cfg: DictConfig) -> dict:
    """Each leaf of a composed config, interpolations resolved, as ``dotted.key → value``."""

    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return dict(walk(OmegaConf.to_container(cfg, resolve=True)))


def bare_trainer(**options) -> L.Trainer:
    """A Trainer that writes nothing and prints no bar or summary; ``options`` add or replace arguments."""
    plain = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    return L.Trainer(**{**plain, "enable_model_summary": False, **options})
