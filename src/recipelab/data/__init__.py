"""Datasets as plug-ins: a loader function per dataset (returning an ``ImageDataset``), one generic
in-memory DataModule, and batched augmentation on the training device."""

from recipelab.data.augment import build_augmentation
from recipelab.data.datamodule import InMemoryDataModule
from recipelab.data.dataset import ImageDataset
from recipelab.data.memory import EpochPermutation, TensorBatchLoader, prepare_batch

__all__ = [
    "EpochPermutation",
    "ImageDataset",
    "InMemoryDataModule",
    "TensorBatchLoader",
    "build_augmentation",
    "prepare_batch",
]
