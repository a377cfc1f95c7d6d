"""The regularization group's knobs in one validated object: loss penalties, the max-norm constraint,
and the probabilities the model and loss take (dropout, DropConnect, label smoothing).

Penalties and the constraint act on weights only: parameters with ndim <= 1 (biases, normalization
scales and shifts) are skipped, the same rule as ``param_groups_weight_decay``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recipelab.errors import UserError


def weights(model: nn.Module) -> list[torch.Tensor]:
    """The trainable weight matrices and kernels: for a parametrized layer, its original weight."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim > 1]


@dataclass(frozen=True)
class Regularizer:
    """l2: λ/2·Σw² added to the loss (a penalty term, unlike the optimizer's decoupled weight decay);
    l1: λ·Σ|w|; both together: elastic net. max_norm: after every optimizer step, each unit's incoming
    weight vector (a row of a linear weight, an output channel of a conv kernel) is rescaled to L2 norm
    <= max_norm (null: off). sparsity_threshold: |w| below it counts as zero for ``train/sparsity``.
    """

    l1: float = 0.0
    l2: float = 0.0
    max_norm: float | None = None
    dropout: float = 0.0
    dropconnect: float = 0.0
    label_smoothing: float = 0.0
    sparsity_threshold: float = 1e-3

    def __post_init__(self):
        for key in ("l1", "l2", "sparsity_threshold"):
            if getattr(self, key) < 0:
                raise UserError(f"regularization.{key}={getattr(self, key)}: must be >= 0")
        if self.max_norm is not None and self.max_norm <= 0:
            raise UserError(f"regularization.max_norm={self.max_norm}: must be > 0, or null for none")
        for key in ("dropout", "dropconnect", "label_smoothing"):
            if not 0 <= getattr(self, key) < 1:
                raise UserError(f"regularization.{key}={getattr(self, key)}: must be a probability in [0, 1)")

    @property
    def has_penalty(self) -> bool:
        return self.l1 > 0 or self.l2 > 0

    def penalty(self, model: nn.Module) -> torch.Tensor:
        ws = weights(model)
        total = torch.zeros((), device=ws[0].device)
        if self.l1 > 0:
            total = total + self.l1 * sum(w.abs().sum() for w in ws)
        if self.l2 > 0:
            total = total + self.l2 / 2 * sum(w.pow(2).sum() for w in ws)
        return total

    def sparsity(self, model: nn.Module) -> torch.Tensor:
        """The fraction of weights with |w| < sparsity_threshold."""
        ws = weights(model)
        small = sum((w.detach().abs() < self.sparsity_threshold).sum() for w in ws)
        return small / sum(w.numel() for w in ws)

    @torch.no_grad()
    def constrain(self, model: nn.Module) -> None:
        """Max-norm: torch.renorm caps the L2 norm of each slice along dim 0 (one unit's incoming weights)."""
        if self.max_norm is None:
            return
        for w in weights(model):
            w.copy_(torch.renorm(w, 2, 0, self.max_norm))
