"""Wide ResNet (Zagoruyko & Komodakis, 2016): WRN-depth-k, pre-activation basic blocks, 3 groups.

Depth 6n + 4 (n blocks per group), widths 16k, 32k, 64k at strides 1, 2, 2 after a 3×3 conv of 16
channels; WRN-16-4 (2.7M parameters) by default, WRN-28-10 (36.5M) reachable. ``dropout`` acts where
the paper puts it, between the two convs of every block (after the ReLU), not before the head; the
head's weights take DropConnect.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recipelab.errors import UserError
from recipelab.models.blocks import conv3x3, kaiming_init, norm_act, preact_stage
from recipelab.models.dropconnect import drop_connect
from recipelab.models.norm import NormSpec


class WideResNet(nn.Module):
    def __init__(
        self,
        depth: int = 16,
        width: int = 4,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int | Sequence[int] | None = None,
        dropout: float = 0.0,
        dropconnect: float = 0.0,
        norm: NormSpec | None = None,
    ):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise UserError(f"model.depth={depth}: a wide ResNet's depth is 6n+4 (10, 16, 22, 28, 40, ...)")
        if width < 1:
            raise UserError(f"model.width={width}: the widening factor k must be >= 1")
        norm = norm or NormSpec()
        n = (depth - 4) // 6
        self.stem = conv3x3(in_channels, 16, norm)
        stages, c = [], 16
        for i, stride in enumerate((1, 2, 2)):
            stages.append(preact_stage(c, 16 * width * 2**i, n, stride, norm, dropout))
            c = 16 * width * 2**i
        self.stages = nn.Sequential(*stages)
        self.final = nn.Sequential(*norm_act(c, norm, inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = drop_connect(nn.Linear(c, num_classes), dropconnect)
        kaiming_init(self)

    @classmethod
    def refuse(cls, norm: NormSpec, dropout: float, dropconnect: float) -> str | None:
        return None  # every norm (conv maps), dropout inside the blocks, DropConnect on the head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.final(self.stages(self.stem(x)))).flatten(1))
