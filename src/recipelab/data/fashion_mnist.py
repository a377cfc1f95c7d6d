"""Fashion-MNIST (Zalando Research): 60k training and 10k test grey 28×28 images of 10 clothing classes,
in MNIST's IDX format. Found in order: ``root``, ``download_dir``, Debian's package
(``apt-get install dataset-fashion-mnist``), then torchvision's download into ``download_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets import FashionMNIST

from recipelab.data.dataset import ImageDataset
from recipelab.data.idx import load_idx, locate_idx

# Debian's dataset-fashion-mnist package; the variable points elsewhere (tests, other distributions).
DEBIAN_DIR = Path(os.environ.get("RECIPELAB_DEBIAN_DIR", "/usr/share/datasets/fashion-mnist"))
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MEAN, STD = 0.2860, 0.3530  # of the 60k training images, scaled to [0, 1]


def load(root=None, download_dir=None, download: bool = True) -> ImageDataset:
    """The whole dataset as uint8 tensors."""
    how = f", install Debian's package (apt-get install dataset-fashion-mnist: files in {DEBIAN_DIR})"
    folder = locate_idx("Fashion-MNIST", FashionMNIST, root, download_dir, download, [DEBIAN_DIR], how)
    return load_idx(folder, CLASSES, MEAN, STD, raw="FashionMNIST")
