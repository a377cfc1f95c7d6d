"""A checkpoint's stored config is data: rebuilding from it calls only the project's own model and data
classes, whatever the combination; anything else is refused, one line naming the file and the key."""

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recipelab.results.checkpoint import load_checkpoint
from tests.conftest import ROOT

PAYLOAD = "recipelab_trust_payload"  # a module the tests write: importable wherever its folder is on the path
SOURCE = """from pathlib import Path


def touch(*args, marker, **kwargs):
    \"\"\"Creates ``marker``, whatever else it is given (a model's or a loader's keyword arguments).\"\"\"
    Path(marker).touch()
    return touch
"""


@pytest.fixture(scope="module")
def good_checkpoint(one_epoch_run):
    return load_checkpoint(one_epoch_run.metrics()["best_checkpoint"])


def _crafted(good: dict, folder, name: str, change) -> Path:
    """A copy of the good checkpoint whose stored config ``change`` edited: its path."""
    config = copy.deepcopy(good["hyper_parameters"]["config"])
    change(config)
    path = folder / f"{name}.ckpt"
    torch.save({"hyper_parameters": {"config": config}, "state_dict": good["state_dict"]}, path)
    return path


def _touches(marker):
    """A Hydra node that creates ``marker`` if it is instantiated, with any keyword arguments (those of the
    node it replaces, those its caller adds): "no marker" means "never called"."""
    return {"_target_": f"{PAYLOAD}.touch", "marker": str(marker)}


@pytest.fixture
def payload_env(tmp_path):
    """The payload's module written to a folder; the environment that puts it on a command's path."""
    folder = tmp_path / "payload"
    folder.mkdir()
    (folder / f"{PAYLOAD}.py").write_text(SOURCE)
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return folder, {**os.environ, "PYTHONPATH": path}


CRAFTS = {
    # a nested target inside the model config
    "nested_model": ("model.norm_hack._target_", lambda c, m: c["model"].update(norm_hack=_touches(m))),
    # the model's own target replaced by another callable
    "replaced_model": ("model._target_", lambda c, m: c["model"].update(_touches(m))),
    # a target inside the data config (the ensemble's data are rebuilt from it, for every combination)
    "nested_data": (
        "data.dataset.extra._target_",
        lambda c, m: c["data"]["dataset"].update(extra=_touches(m)),
    ),
    # the dataset loader replaced (a partial, as the loader is: called with the data's root)
    "replaced_loader": ("data.dataset._target_", lambda c, m: c["data"]["dataset"].update(_touches(m))),
    # a target anywhere else in the stored config
    "elsewhere": ("callbacks.evil._target_", lambda c, m: c["callbacks"].update(evil=_touches(m))),
}


@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_each_payload_creates_its_marker_when_it_is_called(good_checkpoint, payload_env, monkeypatch, craft):
    """The positive control: instantiated as Hydra would (a partial then called as a loader is), each
    crafted node runs its payload; the refusals below are what keeps the marker away."""
    folder, _ = payload_env
    monkeypatch.syspath_prepend(str(folder))
    key, change = CRAFTS[craft]
    marker = folder / "pwned"
    config = copy.deepcopy(good_checkpoint["hyper_parameters"]["config"])
    change(config, marker)
    made = instantiate(OmegaConf.select(OmegaConf.create(config), key.removesuffix("._target_")))
    if isinstance(made, functools.partial):
        made(root=None)
    assert marker.exists()


@pytest.mark.parametrize("combine", ["mean", "vote", "weights"])
@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_a_foreign_target_in_a_stored_config_is_refused_before_anything_runs(
    good_checkpoint, one_epoch_run, payload_env, tmp_path, combine, craft
):
    key, change = CRAFTS[craft]
    marker = tmp_path / "pwned"
    evil = _crafted(good_checkpoint, tmp_path, craft, lambda c: change(c, marker))
    good = one_epoch_run.metrics()["best_checkpoint"]
    # the crafted member first: the ensemble's data are rebuilt from the first member's config (no reader
    # builds a checkpoint's callbacks: for `elsewhere` the refusal's line is the proof, not the marker)
    cmd = [sys.executable, "-m", "recipelab.ensemble", f"source=[{evil},{good}]", f"combine={combine}"]
    proc = subprocess.run(
        [*cmd, "log_wandb=false"], cwd=ROOT, env=payload_env[1], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and not marker.exists()
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: checkpoint {evil}: refused") and key in line


def test_evaluate_refuses_a_foreign_target_too(good_checkpoint, payload_env, tmp_path):
    marker = tmp_path / "pwned"
    evil = _crafted(good_checkpoint, tmp_path, "evil", lambda c: c["model"].update(_touches(marker)))
    cmd = [sys.executable, "-m", "recipelab.evaluate", f"ckpt_path={evil}", "log_wandb=false"]
    proc = subprocess.run(cmd, cwd=ROOT, env=payload_env[1], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and not marker.exists()
    assert f"model._target_='{PAYLOAD}.touch'" in proc.stderr
