"""Post-hoc temperature scaling (Guo et al., 2017): one scalar T > 0, fitted on the validation split.

Scaling acts on log-probabilities, ``softmax(log p / T)``: for one model without test-time augmentation
that is ``softmax(logits / T)``; for an ensemble (or TTA views) it scales the log of the mean
probabilities, the prediction that gets scored. T is the one minimising the NLL on the validation split;
the test split is then scored before and after. Dividing every log-probability by the same T > 0 keeps
their order, so the predicted class (accuracy) never changes: only the confidence does.
"""

from __future__ import annotations

import math

import torch
from scipy.optimize import minimize_scalar

from recipelab.errors import UserError
from recipelab.results.scores import scores

LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))  # T in [0.05, 20]: far beyond any network's miscalibration
NO_VAL_SPLIT = "temperature scaling skipped: the run has no validation split (data.val_size=0)"


def enabled(value) -> bool:
    """The entries' ``temperature`` key: true or false."""
    if not isinstance(value, bool):
        raise UserError(f"temperature={value!r}: must be true or false")
    return value


def scale(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Probabilities [N, classes] with their log divided by ``temperature`` and renormalized."""
    return (probs.double().clamp_min(1e-12).log() / temperature).softmax(-1).to(probs.dtype)


def fit(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the NLL of ``scale(probs, T)`` on ``labels``.

    A library minimiser (scipy's bounded Brent method on log T) rather than a hand-written search: the
    NLL is convex in 1/T (a log-sum-exp of a linear function of 1/T minus a linear term), hence
    unimodal in log T, where Brent's method converges to ``xatol`` with a guaranteed bracket; a grid or
    a home-made bisection would need its own resolution and stopping rule, each a place for a bug.
    """
    if len(labels) == 0:
        raise UserError("temperature scaling: no samples to fit the temperature on")
    log_p = probs.double().clamp_min(1e-12).log()
    target = labels.long()

    def nll(log_t: float) -> float:
        scaled = (log_p / math.exp(log_t)).log_softmax(-1)
        return torch.nn.functional.nll_loss(scaled, target).item()

    found = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    return float(math.exp(found.x))


def calibrate(
    val_probs: torch.Tensor, val_labels: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor
) -> dict:
    """``{"temperature": T, "ts/acc", "ts/nll", "ts/ece", "ts/brier"}``: T fitted on the validation
    predictions, the scores of ``probs`` scaled by it; ``{}`` when there is no validation split."""
    if len(val_labels) == 0:
        return {}
    temperature = fit(val_probs, val_labels)
    return {"temperature": temperature} | {
        f"ts/{k}": v for k, v in scores(scale(probs, temperature), labels).items()
    }
