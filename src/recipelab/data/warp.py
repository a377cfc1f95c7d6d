"""Per-sample affine ops (rotation, scale): a batched grid gives every sample its own warp."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recipelab.data.augment_base import BatchOp


def affine(x: torch.Tensor, degrees: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Rotate each sample by its angle (degrees, counter-clockwise) and zoom it by its scale (> 1 enlarges)
    about the image centre: per sample what v2's ``affine(img, angle, [0, 0], scale, [0, 0])`` does.

    v2's affine kernel takes one angle and scale per call; a batched grid (affine_grid + grid_sample)
    gives every sample its own. Pixels brought in from outside the image are black (0).
    """
    if len(x) == 0:  # no sample chosen; affine_grid refuses an empty batch
        return x
    angle = torch.deg2rad(degrees)
    cos, sin, zero = angle.cos() / scale, angle.sin() / scale, torch.zeros_like(angle)
    # theta maps output coordinates to input coordinates: the inverse rotation and scale
    theta = torch.stack([torch.stack([cos, sin, zero], -1), torch.stack([-sin, cos, zero], -1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Warp(BatchOp):
    """An affine op: ``draw`` gives every sample an (angle, scale); only the chosen samples are warped
    (the grid is the costly part)."""

    def __call__(self, x, g):
        chosen = self.chosen(x, g, as_index=True)
        angle, scale = (v[chosen] for v in self.draw(x, g))
        return x.index_copy(0, chosen, affine(x[chosen], angle, scale))


class Rotation(Warp):
    """Rotate each chosen sample by an angle drawn from U(-degrees, degrees)."""

    name = "rotation"

    def __init__(self, p: float = 0.5, degrees: float = 15.0):
        super().__init__(p)
        self.degrees = self.magnitude("degrees", degrees, 180)

    def draw(self, x, g):
        angle = self.uniform(x, g, -self.degrees, self.degrees)
        return angle, torch.ones_like(angle)


class Scale(Warp):
    """Zoom each chosen sample in or out by a factor drawn from U(1 - amount, 1 + amount)."""

    name = "scale"

    def __init__(self, p: float = 0.5, amount: float = 0.1):
        super().__init__(p)
        self.amount = self.magnitude("amount", amount, 0.9)

    def draw(self, x, g):
        scale = self.uniform(x, g, 1 - self.amount, 1 + self.amount)
        return torch.zeros_like(scale), scale
