"""A multilayer perceptron: flatten → (linear → norm → ReLU → dropout) per hidden width → linear head.

The default widths 256-128-100 are the MLP of the published 28×28 benchmark table. Norms act on feature
vectors (batch norm: BatchNorm1d; layer norm: over each sample's features; group norm: over groups of
them); instance norm has no meaning without pixels and is refused. DropConnect masks the weights of
every hidden layer and of the head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from recipelab.errors import UserError
from recipelab.models.blocks import image_hw, linear_block
from recipelab.models.dropconnect import drop_connect
from recipelab.models.norm import NormSpec


class MLP(nn.Module):
    def __init__(
        self,
        hidden: Sequence[int] = (256, 128, 100),
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int | Sequence[int] = 28,
        dropout: float = 0.0,
        dropconnect: float = 0.0,
        norm: NormSpec | None = None,
    ):
        super().__init__()
        norm = norm or NormSpec()
        hidden = list(hidden)
        if not hidden or any(int(h) < 1 for h in hidden):
            raise UserError(f"model.hidden={hidden}: give at least one hidden width, each >= 1")
        reason = self.refuse(norm, dropout, dropconnect)
        if reason:
            raise UserError(reason)
        widths = [in_channels * math.prod(image_hw(image_size)), *hidden]
        self.features = nn.Sequential(
            *(
                linear_block(a, b, norm, dropout, dropconnect)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            )
        )
        self.head = drop_connect(nn.Linear(widths[-1], num_classes), dropconnect)

    @classmethod
    def refuse(cls, norm: NormSpec, dropout: float, dropconnect: float) -> str | None:
        return norm.refusal(dims=1)  # its norms act on feature vectors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)))
