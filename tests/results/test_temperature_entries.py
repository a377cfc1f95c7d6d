"""Temperature scaling in evaluate and ensemble, end to end on a one-epoch run (no retraining); the test
split cut to its first N_TEST images to keep the test fast."""

import json
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from recipelab.results import ensemble, ensemble_output, evaluation
from recipelab.results.checkpoint import load_member, member_data
from tests.conftest import standardize

TS_KEYS = {"ts/acc", "ts/nll", "ts/ece", "ts/brier"}
N_TEST = 2000


def small_data(config):
    datamodule = member_data(config)
    datamodule.splits["test"] = tuple(t[:N_TEST] for t in datamodule.splits["test"])
    return datamodule


def probs_of(path, split):
    """A checkpoint's probabilities (no test-time flip) on a split of its run, computed here."""
    member = load_member(path)
    images, labels = small_data(member.config).splits[split]
    with torch.no_grad():
        return member.model(standardize(images)).softmax(-1), labels


def scaled_nll(probs, labels, t):
    return torch.nn.functional.cross_entropy(probs.clamp_min(1e-12).log() / t, labels).item()


@pytest.fixture(scope="module")
def run_copy(one_epoch_run, tmp_path_factory):
    return shutil.copytree(one_epoch_run.run_dir, tmp_path_factory.mktemp("ts") / "run")


@pytest.fixture(autouse=True)
def _small_test_split(monkeypatch):
    monkeypatch.setattr(evaluation, "member_data", small_data)
    monkeypatch.setattr(ensemble, "member_data", small_data)


def config(**keys):
    return OmegaConf.create(
        {"tta_flip": False, "batch_size": 1000, "device": "cpu", "temperature": True} | keys
    )


def test_evaluate_reports_scores_before_and_after_scaling(run_copy):
    cfg = config(ckpt_path=str(run_copy), split="test", log_wandb=False)
    result = evaluation.evaluate(cfg)
    metrics = result["metrics"]
    assert {f"test/{k}" for k in TS_KEYS} | {"test/acc", "test/nll", "temperature"} <= set(metrics)
    assert json.loads((run_copy / "evaluate.json").read_text())["metrics"] == metrics
    probs, labels = probs_of(result["checkpoint"], "test")
    acc = (probs.argmax(-1) == labels).float().mean().item()
    assert (
        metrics["test/acc"] == pytest.approx(acc, abs=1e-6) and metrics["test/ts/acc"] == metrics["test/acc"]
    )
    t = metrics["temperature"]
    assert metrics["test/ts/nll"] == pytest.approx(scaled_nll(probs, labels, t), abs=1e-4)
    # T minimises the validation NLL: nudging it either way does not lower it
    val, val_labels = probs_of(result["checkpoint"], "val")
    at_t = scaled_nll(val, val_labels, t)
    assert at_t <= min(scaled_nll(val, val_labels, t * 1.05), scaled_nll(val, val_labels, t / 1.05))
    assert at_t <= scaled_nll(val, val_labels, 1.0) + 1e-6
    cfg.temperature, cfg.split = False, "val"
    assert set(evaluation.evaluate(cfg)["metrics"]) == {"val/acc", "val/nll", "val/ece", "val/brier"}


def test_ensemble_reports_the_scaled_ensemble(run_copy):
    last = str(run_copy / "checkpoints" / "last.ckpt")
    result = ensemble.evaluate(config(source=[last, last], combine="mean"))  # the mean of two equals one
    ens = result["ensemble"]
    assert TS_KEYS | {"temperature"} <= set(ens) and result["temperature_note"] is None
    assert ens["ts/acc"] == ens["acc"]
    probs, labels = probs_of(last, "test")
    assert ens["acc"] == pytest.approx((probs.argmax(-1) == labels).float().mean().item(), abs=1e-6)
    assert ens["ts/nll"] == pytest.approx(scaled_nll(probs, labels, ens["temperature"]), abs=1e-4)
    text = ensemble_output.write(result, log_wandb=False)
    assert f"temperature-scaled (T={ens['temperature']:.3f})" in text
    written = json.loads((run_copy / "checkpoints" / "ensemble.json").read_text())
    assert written["ensemble"]["ts/nll"] == pytest.approx(ens["ts/nll"])


def test_evaluate_takes_the_multi_view_test_time_augmentation(run_copy):
    from recipelab.training import predict_proba

    cfg = config(ckpt_path=str(run_copy), split="test", log_wandb=False, temperature=False)
    cfg.tta_flip, cfg.tta_shift = True, 1
    result = evaluation.evaluate(cfg)
    assert (result["tta_flip"], result["tta_shift"]) == (True, 1)
    member = load_member(result["checkpoint"])
    assert member.tta() == (member.config.tta_flip, 0) and member.tta(False, 2) == (False, 2)
    images, labels = small_data(member.config).splits["test"]
    with torch.no_grad():
        probs = predict_proba(member.model, standardize(images), True, 1)
    acc = (probs.argmax(-1) == labels).float().mean().item()
    assert result["metrics"]["test/acc"] == pytest.approx(acc, abs=1e-6)
