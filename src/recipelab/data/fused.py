"""Training batches for k seeds trained in one process (``seeds_per_process``): each copy of the network
sees the batches its own separate run would see.

Copy i's samples come in the order of ``EpochPermutation(seed_i)`` and are augmented by an augmentation
seeded with ``seed_i``: the same order and the same draws as the separate run ``seed=seed_i`` (the
augmentations' generators are their own, not the global one). Validation and test batches are shared:
every copy is evaluated on the same images.
"""

from __future__ import annotations

import torch

from recipelab.data.datamodule import InMemoryDataModule
from recipelab.data.memory import TensorBatchLoader, prepare_batch


class _Samplers:
    """The copies' samplers as one: Lightning sets every copy's epoch through ``loader.sampler``."""

    def __init__(self, samplers):
        self.samplers = samplers

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.samplers[0].epoch


class StackedBatchLoader:
    """One ``TensorBatchLoader`` per copy, zipped: each batch is the copies' batches stacked on a leading
    axis (images ``[k, N, C, H, W]``, labels and sample indices ``[k, N]``)."""

    batch_sampler = None

    def __init__(self, loaders: list[TensorBatchLoader]):
        self.loaders = loaders
        self.sampler = _Samplers([loader.sampler for loader in loaders])

    def __len__(self) -> int:
        return len(self.loaders[0])

    def state_dict(self) -> dict:
        return {"copies": [loader.state_dict() for loader in self.loaders]}

    def load_state_dict(self, state: dict) -> None:
        for loader, own in zip(self.loaders, state["copies"], strict=True):
            loader.load_state_dict(own)

    def __iter__(self):
        for parts in zip(*self.loaders, strict=True):
            yield tuple(torch.stack(tensors) for tensors in zip(*parts, strict=True))


class FusedDataModule(InMemoryDataModule):
    """``InMemoryDataModule`` for k copies: ``seeds`` (one per copy) order the training samples, and
    ``augmentations`` (one per copy, each seeded with its copy's seed, or None) augment them."""

    def __init__(self, *args, seeds, augmentations, **kwargs):
        super().__init__(*args, shuffle_seed=seeds[0], augmentation=augmentations[0], **kwargs)
        self.seeds, self.augmentations = list(seeds), list(augmentations)

    def _train_batches(self) -> StackedBatchLoader:
        return StackedBatchLoader(
            [self._loader("train", self.batch_size, train=True, seed=seed) for seed in self.seeds]
        )

    def on_after_batch_transfer(self, batch, dataloader_idx):
        training = self.trainer is not None and self.trainer.training
        if not training:
            return super().on_after_batch_transfer(batch, dataloader_idx)
        images, labels, index = batch
        epoch = self.trainer.current_epoch
        prepared = [
            prepare_batch(images[i], *self.stats, augmentation, index=index[i], epoch=epoch)
            for i, augmentation in enumerate(self.augmentations)
        ]
        return torch.stack(prepared), labels

    def _augmentation_state(self) -> dict:
        return {"augmentations": [a.state_dict() for a in self.augmentations if a is not None]}

    def _load_augmentation_state(self, state: dict) -> None:
        for augmentation, own in zip(
            [a for a in self.augmentations if a is not None], state.get("augmentations", []), strict=False
        ):
            augmentation.load_state_dict(own)
