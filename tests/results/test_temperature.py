"""Temperature scaling: the fitted T, against an independent grid search; accuracy unchanged; NLL never up."""

import numpy as np
import pytest
import torch

from recipelab.errors import UserError
from recipelab.results import temperature
from recipelab.results.scores import scores


def synthetic(true_t: float, n: int = 20000, classes: int = 10, seed: int = 0):
    """Labels drawn from softmax(z); the model reports softmax(true_t·z): its T is ``true_t``."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=gen, dtype=torch.float64)
    labels = torch.multinomial(z.softmax(-1), 1, generator=gen).squeeze(1)
    return (true_t * z).softmax(-1), labels


def grid_nll_argmin(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The NLL-minimising T on a grid (0.2 to 8 by 0.05, then by 0.001 around the best), in numpy: no
    code shared with the module."""
    log_p = np.log(np.clip(probs.numpy().astype(np.float64), 1e-12, None))
    y = labels.numpy()

    def nll(t: float) -> float:
        s = log_p / t
        s = s - s.max(1, keepdims=True)
        log_softmax = s - np.log(np.exp(s).sum(1, keepdims=True))
        return -log_softmax[np.arange(len(y)), y].mean()

    coarse = np.arange(0.2, 8.0, 0.05)
    best = coarse[int(np.argmin([nll(t) for t in coarse]))]
    fine = np.arange(best - 0.05, best + 0.05, 0.001)
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


@pytest.mark.parametrize("true_t", [3.0, 0.5])
def test_fitted_temperature_is_the_true_one_and_the_grid_minimum(true_t):
    probs, labels = synthetic(true_t)
    fitted = temperature.fit(probs, labels)
    assert fitted == pytest.approx(grid_nll_argmin(probs, labels), abs=0.005)
    assert fitted == pytest.approx(true_t, rel=0.06)


def test_a_calibrated_model_keeps_about_t_1():
    probs, labels = synthetic(1.0, seed=3)
    assert temperature.fit(probs, labels) == pytest.approx(1.0, abs=0.06)


@pytest.mark.parametrize("t", [0.1, 0.7, 1.0, 3.0, 19.0])
def test_scaling_never_changes_the_predicted_class(t):
    probs, labels = synthetic(3.0, n=5000, seed=1)
    probs = probs.float()  # the entries' dtype
    assert torch.equal(temperature.scale(probs, t).argmax(-1), probs.argmax(-1))
    assert torch.allclose(temperature.scale(probs, t).sum(-1), torch.ones(len(probs)), atol=1e-5)


@pytest.mark.parametrize("true_t", [0.4, 1.0, 2.5, 6.0])
def test_nll_on_the_fit_split_never_rises(true_t):
    probs, labels = synthetic(true_t, n=3000, seed=2)
    before = scores(probs.float(), labels)
    after = temperature.calibrate(probs.float(), labels, probs.float(), labels)
    assert after["ts/nll"] <= before["nll"] + 1e-6
    assert after["ts/acc"] == before["acc"]
    assert set(after) == {"temperature", "ts/acc", "ts/nll", "ts/ece", "ts/brier"}


def test_scaling_an_overconfident_model_lowers_test_ece_and_nll():
    val, val_labels = synthetic(3.0, seed=4)
    test, test_labels = synthetic(3.0, seed=5)
    before = scores(test.float(), test_labels)
    after = temperature.calibrate(val.float(), val_labels, test.float(), test_labels)
    assert after["ts/nll"] < before["nll"] and after["ts/ece"] < before["ece"] / 2
    assert after["ts/brier"] < before["brier"] and after["ts/acc"] == before["acc"]


def test_no_validation_split_skips_scaling_and_bad_keys_are_refused():
    probs, labels = synthetic(2.0, n=100)
    assert temperature.calibrate(probs[:0], labels[:0], probs, labels) == {}
    with pytest.raises(UserError, match=r"^temperature='yes': must be true or false$"):
        temperature.enabled("yes")
