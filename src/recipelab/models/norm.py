"""The normalization factory: every layer of a network asks it for its norm, so one option changes all."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recipelab.errors import UserError


@dataclass(frozen=True)
class NormSpec:
    """``kind``: batchnorm, layernorm, groupnorm, instancenorm or none; ``position``: pre/post activation.

    ``freeze_scale``: the affine scale stays 1 (no gradient; airbench); ``bias_lr_scale``: the affine
    bias trains at this multiple of the optimizer's lr (the param groups read it from the tensor).
    """

    kind: str = "batchnorm"
    position: str = "pre"
    eps: float = 1e-5
    momentum: float = 0.1
    groups: int = 8
    freeze_scale: bool = False
    bias_lr_scale: float = 1.0

    def __post_init__(self):
        if self.kind not in NORMS:
            raise UserError(f"normalization.kind={self.kind!r}: choose from {sorted(NORMS)}")
        if self.position not in ("pre", "post"):
            raise UserError(f"normalization.position={self.position!r}: choose pre or post (activation)")
        if not self.eps > 0:
            raise UserError(f"normalization.eps={self.eps}: must be > 0")
        if not 0 <= self.momentum <= 1:
            raise UserError(f"normalization.momentum={self.momentum}: must lie in [0, 1]")
        if self.groups < 1:
            raise UserError(f"normalization.groups={self.groups}: must be >= 1")
        if not self.bias_lr_scale >= 0:
            raise UserError(f"normalization.bias_lr_scale={self.bias_lr_scale}: must be >= 0")

    def __call__(self, channels: int, dims: int = 2) -> nn.Module:
        """The norm for ``channels`` features: of conv maps [N, C, H, W] (``dims=2``) or of feature vectors
        [N, C] (``dims=1``: BatchNorm1d, LayerNorm over the features, GroupNorm on [N, C])."""
        reason = self.refusal(dims)
        if reason:
            raise UserError(reason)
        layer = (NORMS if dims == 2 else NORMS_1D)[self.kind](channels, self)
        if getattr(layer, "weight", None) is not None and self.freeze_scale:
            layer.weight.requires_grad_(False)
        if getattr(layer, "bias", None) is not None and self.bias_lr_scale != 1:
            layer.bias.lr_scale = self.bias_lr_scale  # read by training.optim.param_groups_weight_decay
        return layer

    def refusal(self, dims: int = 2) -> str | None:
        """Why this norm cannot be made for ``dims`` (None when it can); models call it in ``refuse``."""
        if dims not in (1, 2):
            return f"norms exist for feature vectors (dims=1) and conv maps (dims=2), not dims={dims}"
        if dims == 1 and self.kind not in NORMS_1D:
            # one value per channel and sample: normalized alone it is always 0
            return (
                f"normalization.kind={self.kind!r} normalizes each channel over its pixels; feature "
                "vectors have none: choose layernorm (each sample over its features) or groupnorm"
            )
        return None


def _groups(channels: int, wanted: int) -> int:
    g = min(wanted, channels)
    while channels % g:
        g -= 1
    return g


NORMS = {
    "batchnorm": lambda c, s: nn.BatchNorm2d(c, eps=s.eps, momentum=s.momentum),
    # GroupNorm with one group normalizes over (C, H, W) per sample: layer norm for conv features.
    "layernorm": lambda c, s: nn.GroupNorm(1, c, eps=s.eps),
    "groupnorm": lambda c, s: nn.GroupNorm(_groups(c, s.groups), c, eps=s.eps),
    "instancenorm": lambda c, s: nn.GroupNorm(c, c, eps=s.eps),
    "none": lambda c, s: nn.Identity(),
}
NORMS_1D = {  # for feature vectors [N, C]
    "batchnorm": lambda c, s: nn.BatchNorm1d(c, eps=s.eps, momentum=s.momentum),
    "layernorm": lambda c, s: nn.LayerNorm(c, eps=s.eps),
    "groupnorm": lambda c, s: nn.GroupNorm(_groups(c, s.groups), c, eps=s.eps),
    "none": lambda c, s: nn.Identity(),
}


def check_batch_of_one(model: nn.Module, data, smallest: int | None, world: int = 1, synced: bool = False):
    """A training batch of one image (``data.batch_size=1``, or an epoch's last partial batch; under DDP, in
    each of ``world`` processes) refused before any work where the network cannot train on it: batch norm
    over features alone (the MLP's BatchNorm1d) has one value per channel. Found by running the meta-device
    ``model`` on such a batch, so that every network is asked the same way; it failed at that step before,
    after the run had started. Batch norm ``synced`` across the processes sees the global batch: ``world``
    images."""
    if smallest != 1 or data.get("image_size") is None or (world > 1 and synced):
        return
    x = torch.empty(1, data.in_channels, data.image_size, data.image_size, device="meta")
    training = model.training
    try:
        model.train()(x)
    except Exception as err:  # only batch norm's refusal is this check's to report
        if "more than 1 value per channel" not in str(err):
            return
        each = "" if world == 1 else f" in each of the {world} processes"
        can = "normalization=layernorm, groupnorm or none can"
        can += "" if world == 1 else ", and so does trainer.sync_batchnorm=true"
        given = f"data.batch_size={data.batch_size}"
        if data.batch_size == world:
            raise UserError(f"{given}: batch norm cannot train on one image a batch{each} ({can})") from None
        raise UserError(
            f"{given}: an epoch's last training batch would hold 1 image{each}, on which batch norm cannot "
            "train; choose a batch size (or data.train_size) that leaves 0 or at least 2"
        ) from None
    finally:
        model.train(training)
