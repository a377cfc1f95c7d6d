"""A checkpoint's stored config is data: rebuilding from it calls only the project's own model and data
classes, whatever the combination; anything else is refused, one line naming the file and the key."""

import subprocess
import sys

import pytest
import torch

from recipelab.results.checkpoint import load_checkpoint
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def good_checkpoint(one_epoch_run):
    return load_checkpoint(one_epoch_run.metrics()["best_checkpoint"])


def _crafted(good: dict, folder, name: str, change) -> "Path":  # noqa: F821
    config = {k: v for k, v in good["hyper_parameters"]["config"].items()}
    config = __import__("copy").deepcopy(config)
    change(config)
    path = folder / f"{name}.ckpt"
    torch.save({"hyper_parameters": {"config": config}, "state_dict": good["state_dict"]}, path)
    return path


def _opens(marker):
    """A Hydra node that would create ``marker`` if it were instantiated."""
    return {"_target_": "builtins.open", "_args_": [str(marker), "w"]}


CRAFTS = {
    # a nested target inside the model config
    "nested_model": ("model.norm_hack._target_", lambda c, m: c["model"].update(norm_hack=_opens(m))),
    # the model's own target replaced by another callable
    "replaced_model": ("model._target_", lambda c, m: c["model"].update(_opens(m))),
    # a target inside the data config (used to rebuild the data for every combination)
    "nested_data": ("data.dataset.extra._target_", lambda c, m: c["data"]["dataset"].update(extra=_opens(m))),
    # the dataset loader replaced
    "replaced_loader": ("data.dataset._target_", lambda c, m: c["data"]["dataset"].update(_opens(m))),
    # a target anywhere else in the stored config
    "elsewhere": ("callbacks.evil._target_", lambda c, m: c["callbacks"].update(evil=_opens(m))),
}


@pytest.mark.parametrize("combine", ["mean", "vote", "weights"])
@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_a_foreign_target_in_a_stored_config_is_refused_before_anything_runs(
    good_checkpoint, one_epoch_run, tmp_path, combine, craft
):
    key, change = CRAFTS[craft]
    marker = tmp_path / "pwned"
    evil = _crafted(good_checkpoint, tmp_path, craft, lambda c: change(c, marker))
    good = one_epoch_run.metrics()["best_checkpoint"]
    cmd = [sys.executable, "-m", "recipelab.ensemble", f"source=[{good},{evil}]", f"combine={combine}"]
    proc = subprocess.run([*cmd, "log_wandb=false"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and not marker.exists()
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: checkpoint {evil}: refused") and key in line


def test_evaluate_refuses_a_foreign_target_too(good_checkpoint, tmp_path):
    marker = tmp_path / "pwned"
    evil = _crafted(good_checkpoint, tmp_path, "evil", lambda c: c["model"].update(_opens(marker)))
    cmd = [sys.executable, "-m", "recipelab.evaluate", f"ckpt_path={evil}", "log_wandb=false"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and not marker.exists()
    assert "model._target_='builtins.open'" in proc.stderr
