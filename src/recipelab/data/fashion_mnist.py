"""Fashion-MNIST (Zalando Research): 60k training and 10k test grey 28×28 images of 10 clothing classes.

Found in order: ``root`` if it holds the four IDX files (plain or ``.gz``), Debian's package
(``apt-get install dataset-fashion-mnist``), then torchvision's download into ``download_dir``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

from recipelab.data.dataset import ImageDataset
from recipelab.errors import UserError

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
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz", folder / "FashionMNIST" / "raw" / name):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, reader) -> torch.Tensor:
    if path.suffix != ".gz":
        return reader(str(path))
    # torchvision's IDX readers take plain files only; the Debian package ships them gzipped.
    with gzip.open(path, "rb") as src, tempfile.NamedTemporaryFile(suffix=".idx") as tmp:
        shutil.copyfileobj(src, tmp)
        tmp.flush()
        return reader(tmp.name)


def _folder_has_data(folder: Path) -> bool:
    return all(_find(folder, name) for pair in _FILES.values() for name in pair)


def locate_data(
    root: str | os.PathLike | None = None,
    download_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """The folder to read from: ``root`` if it holds the files, then Debian's package, then a download."""
    for folder in [Path(p) for p in (root, download_dir) if p] + [DEBIAN_DIR]:
        if _folder_has_data(folder):
            return folder
    target = root or download_dir
    if download and target:
        from torchvision.datasets import FashionMNIST

        try:
            FashionMNIST(str(target), train=True, download=True)
            FashionMNIST(str(target), train=False, download=True)
        except Exception:  # any network failure ends in the one message below
            pass
        else:
            return Path(target)
    raise UserError(
        "Fashion-MNIST not found: install it with `apt-get install dataset-fashion-mnist` "
        f"(files in {DEBIAN_DIR}), or put the IDX files in data.root, or allow torchvision's download"
    )


def load_fashion_mnist(split: str = "train", root=None, download_dir=None, download: bool = True):
    """(images uint8 [N, 1, 28, 28], labels int64 [N]) of one split."""
    folder = locate_data(root, download_dir, download)
    images_name, labels_name = _FILES[split]
    images = _read_idx(_find(folder, images_name), read_image_file).unsqueeze(1).contiguous()
    labels = _read_idx(_find(folder, labels_name), read_label_file).long()
    return images, labels


def load(root=None, download_dir=None, download: bool = True) -> ImageDataset:
    """The whole dataset as uint8 tensors."""
    train, test = (load_fashion_mnist(s, root, download_dir, download) for s in ("train", "test"))
    return ImageDataset(*train, *test, classes=CLASSES, mean=(MEAN,), std=(STD,))
