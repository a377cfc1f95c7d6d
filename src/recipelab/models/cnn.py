"""A small VGG-style CNN family: stages of (conv → norm → activation) × depth, then max-pool."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recipelab.errors import UserError
from recipelab.models.blocks import conv_block
from recipelab.models.dropconnect import drop_connect
from recipelab.models.norm import NormSpec


class ConvNet(nn.Module):
    """``widths`` gives the channels of each stage; every stage but the last halves the resolution.
    ``depth``: conv blocks per stage, one number for all or one per stage (few at full resolution and
    more after the pools is where the time goes furthest on a CPU).
    ``image_size`` is accepted (the model contract) and unused: the global average pool takes any size."""

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64),
        depth: int | Sequence[int] = 2,
        num_classes: int = 10,
        in_channels: int = 1,
        dropout: float = 0.0,
        dropconnect: float = 0.0,
        norm: NormSpec | None = None,
        image_size: int | Sequence[int] | None = None,
    ):
        super().__init__()
        norm = norm or NormSpec()
        depths = [depth] * len(widths) if isinstance(depth, int) else list(depth)
        if len(depths) != len(widths) or min(depths) < 1:
            raise UserError(
                f"model.depth={depth}: one number >= 1, or one per stage of widths={list(widths)}"
            )
        stages, c = [], in_channels
        for i, (width, blocks_in_stage) in enumerate(zip(widths, depths, strict=True)):
            blocks = [conv_block(c if j == 0 else width, width, norm) for j in range(blocks_in_stage)]
            if i < len(widths) - 1:
                blocks.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*blocks))
            c = width
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        # DropConnect on the classifier's weights, where Wan et al. applied it (dropout acts on its inputs)
        self.head = drop_connect(nn.Linear(c, num_classes), dropconnect)

    @classmethod
    def refuse(cls, norm: NormSpec, dropout: float, dropconnect: float) -> str | None:
        return None  # every norm (conv maps), dropout before the head, DropConnect on the head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.head(self.dropout(x))
