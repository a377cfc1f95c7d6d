"""Scores of class probabilities, and the probabilities of models on a DataModule's split."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

from recipelab.training import nll, predict_proba


def scores(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, NLL, ECE (15 bins, as training's test/ece) and Brier score (the mean over samples of
    the squared distance between the probabilities and the one-hot label)."""
    one_hot = F.one_hot(labels, probs.shape[-1]).to(probs.dtype)
    return {
        "acc": (probs.argmax(-1) == labels).float().mean().item(),
        "nll": nll(probs, labels).item(),
        "ece": multiclass_calibration_error(probs, labels, probs.shape[-1], n_bins=15).item(),
        "brier": (probs - one_hot).pow(2).sum(-1).mean().item(),
    }


@torch.no_grad()
def split_probs(models, views, datamodule, split: str = "test", batch_size: int = 1000, device="cpu"):
    """(probabilities [models, N, classes], labels [N]) of ``models`` on a split, in one pass over it;
    ``views``: each model's test-time (flip, shift), as ``Member.tta`` gives them."""
    images, labels = datamodule.to(device).splits[split]
    outputs = [[] for _ in models]
    for start in range(0, len(labels), batch_size):
        x = datamodule.prepare(images[start : start + batch_size].to(device))
        for i, (model, view) in enumerate(zip(models, views, strict=True)):
            outputs[i].append(predict_proba(model, x, *view).cpu())
    return torch.stack([torch.cat(o) for o in outputs]), labels.cpu()


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
