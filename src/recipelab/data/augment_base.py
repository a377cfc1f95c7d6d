"""The base of the batched augmentation ops: option checks and per-sample random draws."""

from __future__ import annotations

import torch

from recipelab.errors import UserError


class BatchOp:
    name = ""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise UserError(f"augmentation {self.name} p={p}: a probability must lie in [0, 1]")
        self.p = p

    def check_channels(self, channels: int) -> None:
        """Refuse (UserError) an option this op cannot apply to images with ``channels`` channels."""

    def magnitude(self, key: str, value, high: float | None = None):
        """Check a magnitude (a number, or a [low, high] range): >= 0, and <= ``high`` where given."""
        values = (
            [value] if isinstance(value, int | float) else list(value)
        )  # a list or an OmegaConf ListConfig
        if any(v < 0 or (high is not None and v > high) for v in values) or sorted(values) != values:
            allowed = f"in [0, {high}]" if high is not None else ">= 0"
            raise UserError(f"augmentation {self.name} {key}={value}: must be {allowed} (ranges low <= high)")
        return value if isinstance(value, int | float) else tuple(values)

    def uniform(self, x: torch.Tensor, g: torch.Generator, low, high) -> torch.Tensor:
        """One draw per sample from U(low, high), on x's device and dtype."""
        return (low + (high - low) * torch.rand(len(x), generator=g)).to(x.device, x.dtype)

    def chosen(self, x: torch.Tensor, g: torch.Generator, as_index: bool = False) -> torch.Tensor:
        """The samples this op applies to: a bool mask [B], or (as_index) their indices, on x's device.

        Drawn on the CPU, so finding the indices never makes the host wait for the device.
        """
        mask = torch.rand(len(x), generator=g) < self.p
        return (mask.nonzero().flatten() if as_index else mask).to(x.device)
