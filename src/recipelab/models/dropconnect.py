"""DropConnect (Wan et al., 2013): drop individual weights, not units, during training only.

A weight parametrization (torch.nn.utils.parametrize), so any layer with a ``weight`` takes it unchanged
and the mask follows the layer's train/eval mode. One mask per forward pass, i.e. per mini-batch (the
paper draws one per sample, which costs a weight copy per sample); kept weights are scaled by 1/(1-p)
as inverted dropout does, so evaluation uses the plain weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize


class DropConnect(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return F.dropout(weight, self.p, self.training)


def drop_connect(layer: nn.Module, p: float) -> nn.Module:
    """``layer`` with DropConnect on its weight (unchanged when p == 0)."""
    if p > 0:
        parametrize.register_parametrization(layer, "weight", DropConnect(p))
    return layer
