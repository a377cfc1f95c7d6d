"""Pre-activation ResNet (He et al., 2016, "Identity mappings in deep residual networks") for small images.

The small-image variant: a 3×3 stride-1 stem and no max-pool, four stages of basic blocks at widths
w, 2w, 4w, 8w (strides 1, 2, 2, 2), a final norm → ReLU, global average pool, dropout and the linear head
(DropConnect on its weights). Every norm comes from the factory: the normalization reaches every block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recipelab.errors import UserError
from recipelab.models.blocks import conv3x3, kaiming_init, norm_act, preact_stage
from recipelab.models.dropconnect import drop_connect
from recipelab.models.norm import NormSpec

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}  # basic blocks per stage


class PreActResNet(nn.Module):
    def __init__(
        self,
        depth: int = 18,
        width: int = 64,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int | Sequence[int] | None = None,
        dropout: float = 0.0,
        dropconnect: float = 0.0,
        norm: NormSpec | None = None,
    ):
        super().__init__()
        if depth not in BLOCKS:
            raise UserError(f"model.depth={depth}: a pre-activation ResNet here has depth 18 or 34")
        if width < 1:
            raise UserError(f"model.width={width}: the base number of channels must be >= 1")
        norm = norm or NormSpec()
        self.stem = conv3x3(in_channels, width, norm)
        stages, c = [], width
        for i, blocks in enumerate(BLOCKS[depth]):
            stages.append(preact_stage(c, width * 2**i, blocks, 1 if i == 0 else 2, norm))
            c = width * 2**i
        self.stages = nn.Sequential(*stages)
        self.final = nn.Sequential(*norm_act(c, norm, inplace=True))  # the last block's sum is not normed
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = drop_connect(nn.Linear(c, num_classes), dropconnect)
        kaiming_init(self)

    @classmethod
    def refuse(cls, norm: NormSpec, dropout: float, dropconnect: float) -> str | None:
        return None  # every norm (conv maps), dropout before the head, DropConnect on the head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.final(self.stages(self.stem(x)))).flatten(1)
        return self.head(self.dropout(x))
