from recipelab.data.augment import build_augmentation
from recipelab.data.fashion_mnist import (
    FashionMNISTDataModule,
    TensorBatchLoader,
    load_fashion_mnist,
    prepare_batch,
)

__all__ = [
    "FashionMNISTDataModule",
    "TensorBatchLoader",
    "build_augmentation",
    "load_fashion_mnist",
    "prepare_batch",
]
