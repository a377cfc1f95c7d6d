"""The blocks every network family is made of, so that a normalization option means the same everywhere.

``norm.position`` places the norm before the activation (``pre``: layer → norm → ReLU) or after it
(``post``: layer → ReLU → norm). A layer whose output goes straight into a norm drops its bias (the
norm's shift takes its place); it keeps it with ``normalization=none`` or a norm after the activation.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from recipelab.errors import UserError
from recipelab.models.dropconnect import drop_connect
from recipelab.models.norm import NormSpec


def needs_bias(norm: NormSpec) -> bool:
    """Whether a layer followed by ``norm_act`` keeps its bias."""
    return norm.kind == "none" or norm.position == "post"


def norm_act(channels: int, norm: NormSpec, dims: int = 2, inplace: bool = False) -> list[nn.Module]:
    """[norm, ReLU] or [ReLU, norm] as ``norm.position`` says. ``inplace`` only where the input is a fresh
    tensor nobody else reads (a pre-activation block's input is also its shortcut)."""
    act = nn.ReLU(inplace=inplace)
    return [norm(channels, dims), act] if norm.position == "pre" else [act, norm(channels, dims)]


def conv_block(c_in: int, c_out: int, norm: NormSpec, stride: int = 1) -> nn.Sequential:
    """conv3x3 → norm → ReLU (or → ReLU → norm); indices 0, 1, 2 as ConvNet's checkpoints have them."""
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=needs_bias(norm))
    return nn.Sequential(conv, *norm_act(c_out, norm, inplace=True))


def linear_block(f_in: int, f_out: int, norm: NormSpec, dropout: float, dropconnect: float) -> nn.Sequential:
    """Linear (DropConnect on its weight) → norm → ReLU → Dropout, for feature vectors [N, C]."""
    linear = drop_connect(nn.Linear(f_in, f_out, bias=needs_bias(norm)), dropconnect)
    return nn.Sequential(linear, *norm_act(f_out, norm, dims=1, inplace=True), nn.Dropout(dropout))


def conv3x3(c_in: int, c_out: int, norm: NormSpec, stride: int = 1) -> nn.Conv2d:
    """A bare conv whose output meets a norm next (directly or after a residual sum)."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=needs_bias(norm))


class PreActBlock(nn.Module):
    """He et al. (2016b) pre-activation basic block: norm → ReLU → conv3x3 → norm → ReLU → [dropout] →
    conv3x3, plus the shortcut. A projection (1×1 conv) shortcut, where the shape changes, reads the
    pre-activated input, as in the paper. ``dropout`` between the convs is Zagoruyko & Komodakis' (WRN)."""

    def __init__(self, c_in: int, c_out: int, norm: NormSpec, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.pre = nn.Sequential(*norm_act(c_in, norm))
        self.conv1 = conv3x3(c_in, c_out, norm, stride)
        self.mid = nn.Sequential(*norm_act(c_out, norm, inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(c_out, c_out, norm)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=needs_bias(norm))

    def forward(self, x):
        out = self.pre(x)
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.dropout(self.mid(self.conv1(out))))
        return out + shortcut


def preact_stage(c_in: int, c_out: int, blocks: int, stride: int, norm: NormSpec, dropout: float = 0.0):
    """``blocks`` pre-activation blocks; the first changes width and resolution."""
    return nn.Sequential(
        *(
            PreActBlock(c_in if i == 0 else c_out, c_out, norm, stride if i == 0 else 1, dropout)
            for i in range(blocks)
        )
    )


def kaiming_init(model: nn.Module) -> None:
    """He initialization of every conv (fan-out, ReLU gain), as torchvision's and the papers' ResNets do."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) from the data config's ``image_size`` (one side of a square, or both)."""
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)


def check_cpu_convolutions(model: nn.Module, channels_last: bool, accelerator, precision) -> None:
    """Refuse what torch 2.14.1 cannot train on the CPU: the fp32 backward of a 1x1 stride-2 convolution
    in channels-last with fewer than 8 input channels (a ResNet's shortcut at ``model.width`` < 8) crashed
    (segfault, bus error) in one thread and hung, spinning, in two, on 2 AVX2 cores (oneDNN 3.12);
    8 channels and more, the contiguous layout and bf16 autocast trained. An upstream fault, oneDNN issue
    #6035 (open: the AVX2 1x1 kernel's weight gradient writes past its workspace when the input channels
    are fewer than its block of 8; on another machine it gives wrong gradients without a crash): refused
    here so that a run fails in one line, not in a hang or silently."""
    fp32 = "16" not in str(precision)
    if not (channels_last and accelerator == "cpu" and fp32):
        return
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride == (2, 2) and m.in_channels < 8:
            raise UserError(
                f"channels_last=true: torch's CPU backward of model.{name} (a 1x1 stride-2 convolution of "
                f"{m.in_channels} channels, fewer than 8) in channels-last crashes or hangs; use "
                "channels_last=false or more channels (model.width>=8)"
            )
