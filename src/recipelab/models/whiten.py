"""Two initializations from airbench (Keller Jordan's speed runs) that any network can take:
a whitening first layer fitted on the training images, and identity (dirac) convolutions.

Neither exists in torch: ``torch.nn.init.dirac_`` fills a whole weight (it needs out >= in channels and
leaves no random filters), and no torch layer is fitted from data, so both are written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recipelab.errors import UserError


class Whitening(nn.Module):
    """A k×k convolution (zero-padded to keep the image's size) whose filters are the eigenvectors
    of the training images' k×k patch covariance, each divided by sqrt(eigenvalue + eps), and their
    negatives: 2·C·k² output channels whose covariance over the fitted patches is (nearly) the identity.

    ``frozen``: the filters stay as fitted (no gradient, no weight decay); else they train from there.
    ``fitted`` is kept in the state dict, so a resumed or rebuilt network is never fitted again.
    """

    def __init__(self, channels: int, kernel: int = 2, eps: float = 5e-4, frozen: bool = True):
        super().__init__()
        if kernel < 1:
            raise UserError(f"whiten.kernel={kernel}: must be >= 1 (0 turns whitening off)")
        if not eps > 0:
            raise UserError(f"whiten.eps={eps}: must be > 0")
        self.kernel, self.eps = kernel, eps
        dims = channels * kernel * kernel
        self.weight = nn.Parameter(torch.zeros(2 * dims, channels, kernel, kernel), requires_grad=not frozen)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Set the filters from standardized images [N, C, H, W] (every k×k patch inside them)."""
        patches = F.unfold(images.double(), self.kernel)  # [N, C·k², positions]
        patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(patches.T))
        filters = eigenvectors.T / (eigenvalues.clamp_min(0) + self.eps).sqrt()[:, None]
        filters = filters.reshape(-1, *self.weight.shape[1:])
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight))
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = (self.kernel - 1) // 2  # 'same' size; an even kernel gets its extra pixel after
        after = self.kernel - 1 - before
        return F.conv2d(F.pad(x, (before, after, before, after)), self.weight.to(x.dtype))


def _whiten_input(model: nn.Module, args: tuple) -> tuple:
    return (model.whiten(args[0]), *args[1:])


def attach_whitening(model: nn.Module, whitening: Whitening) -> nn.Module:
    """Put ``whitening`` in front of ``model`` (built for ``whitening.out_channels`` input channels) as its
    submodule ``whiten``, applied by a forward pre-hook, so that every other parameter keeps its name
    (the classifier stays ``head``: param-group rules and checkpoints see the same names)."""
    model.whiten = whitening
    model.register_forward_pre_hook(_whiten_input)
    return model


@torch.no_grad()
def dirac_init(model: nn.Module) -> nn.Module:
    """Identity initialization: in every 2-d convolution with odd kernels, no groups and at least as many
    output as input channels, the first ``in_channels`` filters pass their input channel through
    unchanged (the others keep their random init); a fitted whitening layer is left alone."""
    for layer in model.modules():
        if not isinstance(layer, nn.Conv2d) or layer.groups != 1:
            continue
        out, inp, kh, kw = layer.weight.shape
        if out >= inp and kh % 2 and kw % 2:
            nn.init.dirac_(layer.weight[:inp])
    return model
