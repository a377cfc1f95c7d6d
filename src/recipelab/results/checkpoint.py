"""Checkpoints are data from outside: loaded without running code, and rebuilt only into the project's
own classes.

``torch.load(weights_only=True)`` refuses pickled code, but a checkpoint also stores the run's config, and
a ``_target_`` in it is code to Hydra. Before anything is built from a stored config, every ``_target_``
in it must be one that the project's own configs name (``conf/**.yaml``), and those of the parts that get
built (model, data, normalization, regularization) must come from that part's own options.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from recipelab.errors import UserError
from recipelab.records.folder import CONF_DIR

# the parts of a stored config that get instantiated, and the config folders their options come from
REBUILT = {
    "model": ("model",),
    "data": ("data", "shared"),
    "normalization": ("normalization",),
    "regularization": ("regularization",),
}


@dataclass
class Member:
    """A checkpoint's network, rebuilt: its path, its (checked) stored config and the model in eval mode."""

    path: Path
    config: DictConfig
    model: torch.nn.Module

    def tta(self, flip: bool | None = None, shift: int | None = None) -> tuple[bool, int]:
        """Its test-time views (``predict_proba``'s tta_flip and tta_shift): the overrides where given,
        else as it was trained."""
        flip = self.config.get("tta_flip", False) if flip is None else flip
        return flip, self.config.get("tta_shift", 0) if shift is None else shift


def load_checkpoint(path, mmap: bool = False) -> dict:
    """A checkpoint's contents, loaded without running any code it may carry (``mmap``: its tensors mapped
    from the file, not read)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        # torch's message wraps its reason in advice on loading anyway: the reason is the global that
        # loading would import and call, else what its unpickler could not read (a file of another kind)
        if named := re.search(r"GLOBAL ([\w.]+)", str(err)):
            raise UserError(f"checkpoint {path}: refused, loading it would run code ({named[1]})") from None
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[-2] if len(lines) > 2 else type(err).__name__
        raise UserError(f"checkpoint {path}: corrupt or not a checkpoint ({reason})") from None
    except Exception as err:  # torch raises RuntimeError, EOFError, zip errors… for damaged files
        raise UserError(f"checkpoint {path}: corrupt or truncated ({type(err).__name__})") from None


def _targets(node, prefix: str = ""):
    """(dotted key, value) of every ``_target_`` in a plain container, nested ones included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield prefix + key, value
            else:
                yield from _targets(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{prefix}{i}.")


@cache
def allowed_targets(*folders: str) -> frozenset[str]:
    """The ``_target_``s named by the project's configs under ``folders`` of conf/ (all of conf/ if none)."""
    root = Path(CONF_DIR)
    files = [f for d in folders for f in (root / d).rglob("*.yaml")] if folders else root.rglob("*.yaml")
    return frozenset(v for f in files for _, v in _targets(yaml.safe_load(f.read_text()) or {}))


def check_stored_config(config: dict, path) -> None:
    """Refuse (one line naming the file and the key) a stored config with a foreign ``_target_``."""
    for key, target in _targets(config):
        part = key.split(".", 1)[0]
        allowed = allowed_targets(*REBUILT[part]) if part in REBUILT else allowed_targets()
        if not isinstance(target, str) or target not in allowed:
            raise UserError(
                f"checkpoint {path}: refused, its stored config names {key}={target!r}, which is not "
                f"one of this project's {part if part in REBUILT else 'configured'} classes"
            )


def stored_config(ckpt: dict, path) -> DictConfig:
    """The run config a checkpoint holds, checked (see ``check_stored_config``)."""
    config = (ckpt.get("hyper_parameters") or {}).get("config")
    if not isinstance(config, dict) or not config:
        raise UserError(f"checkpoint {path}: holds no recipelab config to rebuild its model from")
    check_stored_config(config, path)
    if isinstance(k := config.get("seeds_per_process"), int) and k > 1:  # its weights are k stacked copies
        raise UserError(
            f"checkpoint {path}: a fused chunk's checkpoint (seeds_per_process={k}), which resumes the "
            "chunk; each seed's own checkpoints are in its job folder"
        )
    return OmegaConf.create(config)


def load_member(path) -> Member:
    """A checkpoint's model, rebuilt from its own (checked) config, its weights loaded."""
    from recipelab.build import build_model

    path = Path(path)
    ckpt = load_checkpoint(path)
    config = stored_config(ckpt, path)
    model = build_model(config)
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith(prefix)}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        reason = str(err).splitlines()[0]
        raise UserError(f"checkpoint {path}: its weights do not fit its config ({reason})") from None
    return Member(path, config, model.eval())


def member_data(config: DictConfig):
    """The DataModule of a member's (checked) config, set up, without augmentation."""
    from recipelab.build import build_datamodule

    datamodule = build_datamodule(config, augment=False)
    datamodule.setup("test")
    return datamodule
