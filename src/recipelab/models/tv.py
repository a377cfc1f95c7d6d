"""Any classifier of ``torchvision.models`` by name, untrained (``weights=None``: nothing is downloaded).

Adapted to the dataset: ResNet-family networks get a 3×3 stride-1 first conv and no max-pool (small
images); any other network's first conv takes ``in_channels``. The last Linear layer becomes ``head``
(num_classes outputs, DropConnect on its weights). The network keeps its own normalization layers, so
only the default batch norm option is honoured (its eps and momentum go to every BatchNorm layer);
``dropout`` sets the p of the network's own Dropout layers, or, where it has none (ResNets), of a
dropout before the head. Networks that cannot take the images (too small for AlexNet, a ViT's fixed
size) are refused at construction by one trial forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.models as tvm
from torch import nn

from recipelab.errors import UserError
from recipelab.models.blocks import image_hw
from recipelab.models.dropconnect import drop_connect
from recipelab.models.norm import NormSpec

BUILDER_ARGS = {  # their training forward would return auxiliary outputs too
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def _replace(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, attr, module)


def _new_conv(old: nn.Conv2d, in_channels: int, **changes) -> nn.Conv2d:
    args = dict(
        kernel_size=old.kernel_size, stride=old.stride, padding=old.padding, bias=old.bias is not None
    )
    conv = nn.Conv2d(in_channels, old.out_channels, **{**args, **changes})
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class TorchvisionClassifier(nn.Module):
    def __init__(
        self,
        name: str = "resnet18",
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int | Sequence[int] = 32,
        dropout: float = 0.0,
        dropconnect: float = 0.0,
        norm: NormSpec | None = None,
    ):
        super().__init__()
        norm = norm or NormSpec()
        if name not in tvm.list_models(module=tvm):
            raise UserError(
                f"model.name={name!r}: not a torchvision classifier (e.g. resnet18, mobilenet_v3_small; "
                "torchvision.models.list_models() lists them)"
            )
        reason = self.refuse(norm, dropout, dropconnect)
        if reason:
            raise UserError(reason)
        net = tvm.get_model(name, weights=None, num_classes=num_classes, **BUILDER_ARGS.get(name, {}))
        if isinstance(net, tvm.ResNet):
            net.conv1 = _new_conv(net.conv1, in_channels, kernel_size=3, stride=1, padding=1)
            net.maxpool = nn.Identity()
        else:
            first, conv = next((k, m) for k, m in net.named_modules() if isinstance(m, nn.Conv2d))
            if conv.in_channels != in_channels:
                if conv.groups != 1:
                    raise UserError(f"model.name={name!r}: its first conv cannot take {in_channels} channels")
                _replace(net, first, _new_conv(conv, in_channels))
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps, m.momentum = norm.eps, norm.momentum
        own = [m for m in net.modules() if type(m) is nn.Dropout]
        for m in own:
            m.p = dropout
        linears = [(k, m) for k, m in net.named_modules() if isinstance(m, nn.Linear)]
        if not linears or linears[-1][1].out_features != num_classes:
            raise UserError(f"model.name={name!r}: has no final Linear layer to serve as the head")
        last, linear = linears[-1]
        _replace(net, last, nn.Identity())
        self.net = net
        self.dropout = nn.Dropout(0.0 if own else dropout)
        self.head = drop_connect(linear, dropconnect)
        self._try(name, in_channels, image_hw(image_size))

    @torch.no_grad()
    def _try(self, name: str, in_channels: int, hw: tuple[int, int]) -> None:
        """One eval-mode forward pass of a blank image: a network that cannot take it fails here."""
        self.eval()
        try:
            out = self(torch.zeros(1, in_channels, *hw))
        except (RuntimeError, ValueError, AssertionError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UserError(
                f"model.name={name!r} cannot take {in_channels}×{hw[0]}×{hw[1]} images: {reason}"
            ) from err
        finally:
            self.train()
        if not isinstance(out, torch.Tensor) or out.shape != (1, self.head.out_features):
            raise UserError(f"model.name={name!r}: its output is not one row of class scores")

    @classmethod
    def refuse(cls, norm: NormSpec, dropout: float, dropconnect: float) -> str | None:
        if norm.kind != "batchnorm" or norm.position != "pre":
            chosen = "batchnorm_post" if norm.kind == "batchnorm" else norm.kind
            return (
                f"a torchvision network keeps its own normalization layers: choose "
                f"normalization=batchnorm (its eps and momentum apply to them), not {chosen}"
            )
        return None  # dropout: the network's own or one before the head; DropConnect: the head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.net(x)))
