"""What every dataset loader returns: a whole dataset as uint8 tensors, with its classes and statistics.

A dataset option is one YAML under ``conf/data/`` whose ``dataset`` entry names a loader function (a
Hydra partial) plus this function; the generic in-memory DataModule does everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageDataset:
    train_images: torch.Tensor  # uint8 [N, C, H, W]
    train_labels: torch.Tensor  # int64 [N], values in [0, len(classes))
    test_images: torch.Tensor  # uint8 [M, C, H, W]
    test_labels: torch.Tensor  # int64 [M]
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of the training images scaled to [0, 1]
    std: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return tuple(self.train_images.shape[1:])


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images [N, C, H, W] scaled to [0, 1] (for loaders without
    published statistics)."""
    x = images.transpose(0, 1).flatten(1).double() / 255.0
    return tuple(x.mean(1).tolist()), tuple(x.std(1).tolist())


def reason(err: BaseException) -> str:
    """An exception as a short phrase for a one-line message (torchvision's C++ source locations cut)."""
    text = (str(err).strip().splitlines() or [""])[0]
    text = text.rpartition(".cpp:")[2].partition(", ")[2] or text
    if isinstance(err, PermissionError):
        return "permission denied"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
