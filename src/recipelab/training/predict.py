"""Test-time prediction: the views of a batch and the mean of their class probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def views(x: torch.Tensor, flip: bool = False, shift: int = 0) -> list[torch.Tensor]:
    """The test-time views of a batch: the images, their mirrors (``flip``), and each of those translated
    by ``shift`` pixels up, down, left and right (edges repeat the border pixels)."""
    base = [x, x.flip(-1)] if flip else [x]
    if not shift:
        return base
    s, h, w = shift, x.shape[-2], x.shape[-1]
    out = list(base)
    for v in base:
        padded = F.pad(v, (s, s, s, s), mode="replicate")
        for dy, dx in ((0, s), (0, -s), (s, 0), (-s, 0)):  # the view moved by (dy, dx)
            out.append(padded[..., s - dy : s - dy + h, s - dx : s - dx + w])
    return out


def predict_proba(model: torch.nn.Module, x: torch.Tensor, tta_flip: bool = False, tta_shift: int = 0):
    """Class probabilities: the mean of the views' softmax outputs (one view without test-time
    augmentation; with ``tta_flip`` the image and its mirror; ``tta_shift`` adds their translations)."""
    batches = views(x, tta_flip, tta_shift)
    return sum(model(v).float().softmax(-1) for v in batches) / len(batches)


def nll(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the labels under class probabilities (clamped away from log 0)."""
    return F.nll_loss(probs.clamp_min(1e-12).log(), labels)
