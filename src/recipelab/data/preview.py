"""A picture of what the augmentation does: originals and their augmented versions, row by row."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torchvision.utils import make_grid, save_image


def augmentation_grid(images: torch.Tensor, augmentation, per_row: int = 16) -> torch.Tensor:
    """uint8 images [N, C, H, W] → a [3, h, w] grid: a row of originals, then the same augmented, and so on.

    The augmentation's random state is put back afterwards, so drawing the picture moves no training draw.
    """
    per_row = max(min(per_row, len(images)), 1)  # a tiny training set gives a shorter row
    n = len(images) // per_row * per_row
    x = images[:n].float() / 255
    state = augmentation.state_dict()
    augmented = augmentation(x.clone())
    augmentation.load_state_dict(state)
    rows = torch.stack([x.view(-1, per_row, *x.shape[1:]), augmented.view(-1, per_row, *x.shape[1:])], 1)
    return make_grid(rows.flatten(0, 2), nrow=per_row, padding=1, pad_value=0.5)


class AugmentationPreview(L.Callback):
    """At the start of training, save the grid as ``path`` (beside the checkpoints) and log it to W&B."""

    def __init__(self, path: str, samples: int = 64):
        self.path, self.samples = Path(path), samples

    def on_train_start(self, trainer, pl_module):
        augmentation = getattr(trainer.datamodule, "augmentation", None)
        if augmentation is None or not trainer.is_global_zero:
            return
        images = trainer.datamodule.splits["train"][0][: self.samples]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_image(augmentation_grid(images, augmentation), self.path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    "augmentation/samples", [str(self.path)], caption=["rows: original, augmented"]
                )
