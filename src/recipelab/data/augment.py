"""Batched, per-sample random augmentation on the training device.

torchvision's v2 transforms draw one set of random parameters per call, so a whole batch would get the same
flip or crop. Each op here draws its parameters per sample and applies torchvision's v2 kernels to the
whole batch at once (a masked select, or one gather), which keeps augmentation a few tensor ops per step.
Ops take and return float images in [0, 1] of shape [B, C, H, W]; labels never change.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

from recipelab.errors import UserError


class BatchOp:
    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise UserError(f"augmentation p={p}: a probability must lie in [0, 1]")
        self.p = p

    def chosen(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A bool mask [B] of the samples this op applies to."""
        return (torch.rand(len(x), generator=g) < self.p).to(x.device)


class Flip(BatchOp):
    """Horizontal flip of each chosen sample."""

    def __call__(self, x, g):
        return torch.where(self.chosen(x, g)[:, None, None, None], TF.horizontal_flip(x), x)


class Crop(BatchOp):
    """Zero-pad by ``padding`` pixels, then cut each chosen sample at a random offset (others stay put)."""

    def __init__(self, p: float = 1.0, padding: int = 2):
        super().__init__(p)
        if padding < 0:
            raise UserError(f"augmentation crop padding={padding}: must be >= 0")
        self.padding = padding

    def __call__(self, x, g):
        b, _, h, w = x.shape
        pad = self.padding
        offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=g).to(x.device)
        offsets = torch.where(self.chosen(x, g), offsets, pad)
        padded = TF.pad(x, [pad, pad, pad, pad])
        rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
        cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
        batch = torch.arange(b, device=x.device)[:, None, None]
        return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # advanced indexing puts C last


OPS = {"flip": Flip, "crop": Crop}


class BatchAugment:
    """A sequence of ops with its own random generator, so augmentation never moves other random streams."""

    def __init__(self, ops, seed: int = 0):
        self.ops = ops
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x, self.generator)
        return x

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def build_augmentation(ops=None, seed: int = 0) -> BatchAugment | None:
    """``ops``: a list of {op: name, **params}. None or [] means no augmentation."""
    built = []
    for spec in ops or []:
        spec = dict(spec)
        name = spec.pop("op", None)
        if name not in OPS:
            raise UserError(f"augmentation.ops: unknown op {name!r}; choose from {sorted(OPS)}")
        built.append(OPS[name](**spec))
    return BatchAugment(built, seed) if built else None
