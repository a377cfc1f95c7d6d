"""Fashion-MNIST held in memory as uint8 tensors, batched by slicing, augmented on the training device.

The data path follows cifar10-airbench: no Dataset/DataLoader workers, no per-sample PIL transforms.
On 2 cores a worker pool costs more than the whole augmentation done as batched tensor ops.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import tempfile
from pathlib import Path

import lightning as L
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

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


class EpochPermutation:
    """The sample order of one epoch, drawn from a generator seeded with (seed, epoch).

    Any epoch's order can be reproduced without carrying generator state. Lightning calls ``set_epoch``
    on a loader's ``sampler`` at every epoch start, as it does for a DistributedSampler. Under DDP each
    rank takes every world_size-th sample of the same permutation: disjoint shards of one global order.
    """

    def __init__(self, n, shuffle=False, seed=0, rank=0, world_size=1):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.world_size if self.world_size > 1 else self.n

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.world_size > 1:  # equal shards keep the ranks' step counts equal
            order = order[: len(self) * self.world_size][self.rank :: self.world_size]
        return order


class TensorBatchLoader:
    """Yields (images, labels) batches of in-memory tensors in the order of an EpochPermutation."""

    batch_sampler = None  # Lightning inspects loaders as it would a DataLoader: batches come from `sampler`

    def __init__(
        self, images, labels, batch_size, shuffle=False, drop_last=False, seed=0, rank=0, world_size=1
    ):
        self.images, self.labels = images, labels
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler = EpochPermutation(len(labels), shuffle, seed, rank, world_size)
        self.position = 0  # batches of the current epoch handed out: where a checkpoint taken now resumes
        self._resume: dict | None = None

    # Lightning saves and restores the state of loaders with these two methods (a mid-epoch resume).
    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batch": self.position}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        # runs at the first batch, after Lightning's set_epoch: a restored position applies to its own epoch
        resume, self._resume = self._resume, None
        start = resume["batch"] if resume and resume["epoch"] == self.sampler.epoch else 0
        in_order = not self.sampler.shuffle and self.sampler.world_size == 1
        order = None if in_order else self.sampler.indices().to(self.labels.device)
        for b in range(start, len(self)):
            self.position = b + 1
            if in_order:  # slices, no copies
                sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
                yield self.images[sl], self.labels[sl]
            else:
                idx = order[b * self.batch_size : (b + 1) * self.batch_size]
                yield self.images[idx], self.labels[idx]


class FashionMNISTDataModule(L.LightningDataModule):
    """Fashion-MNIST splits as uint8 tensors, held on the training device (47 MB for all of it).

    Batches become normalized floats there; ``augmentation`` (a callable on float batches) runs on
    training batches only.
    """

    def __init__(
        self,
        root=None,
        download=True,
        download_dir=None,
        batch_size=128,
        eval_batch_size=1000,
        val_size=5000,
        train_size=None,
        split_seed=12345,
        shuffle_seed=0,
        augmentation=None,
    ):
        super().__init__()
        self.source = {"root": root, "download_dir": download_dir, "download": download}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.train_size, self.split_seed = val_size, train_size, split_seed
        self.shuffle_seed = shuffle_seed
        self.augmentation = augmentation
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._train_loader: TensorBatchLoader | None = None
        self._train_position: dict | None = None

    def prepare_data(self) -> None:
        locate_data(**self.source)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        images, labels = load_fashion_mnist("train", **self.source)
        # The train/val split has its own seed: changing the run's seed never moves samples across it.
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
        val_idx, train_idx = perm[: self.val_size], perm[self.val_size :]
        if self.train_size:
            train_idx = train_idx[: self.train_size]
        self.splits["train"] = (images[train_idx], labels[train_idx])
        self.splits["val"] = (images[val_idx], labels[val_idx])
        self.splits["test"] = load_fashion_mnist("test", **self.source)
        if self.trainer is not None:  # resident on the training device: no per-step host→device copies
            device = self.trainer.strategy.root_device
            self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}

    @property
    def num_train(self) -> int:
        return len(self.splits["train"][1])

    def _loader(self, split: str, batch_size: int, train: bool) -> TensorBatchLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return TensorBatchLoader(
            *self.splits[split],
            batch_size=batch_size,
            shuffle=train,
            drop_last=False,
            seed=self.shuffle_seed,
            rank=rank if train else 0,
            world_size=world if train else 1,
        )

    def train_dataloader(self):
        self._train_loader = self._loader("train", self.batch_size, train=True)
        if self._train_position:
            self._train_loader.load_state_dict(self._train_position)
            self._train_position = None
        return self._train_loader

    # Checkpointed with the run (Lightning calls these): the augmentation's generator, and the training
    # loader's position, which Lightning's own loader-state path drops when configure_optimizers asks for
    # trainer.estimated_stepping_batches (Lightning issue 20550), as the schedulers here do.
    def state_dict(self) -> dict:
        state = {"train_loader": self._train_loader.state_dict()} if self._train_loader else {}
        if self.augmentation is not None:
            state["augmentation"] = self.augmentation.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.augmentation is not None and "augmentation" in state:
            self.augmentation.load_state_dict(state["augmentation"])
        self._train_position = state.get("train_loader")
        if self._train_loader is not None and self._train_position:  # a loader made before the restore
            self._train_loader.load_state_dict(self._train_position)

    def val_dataloader(self):
        return self._loader("val", self.eval_batch_size, train=False)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size, train=False)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        images, labels = batch
        train = self.trainer is not None and self.trainer.training
        return prepare_batch(images, self.augmentation if train else None), labels


def prepare_batch(images: torch.Tensor, augmentation=None) -> torch.Tensor:
    """uint8 [N, 1, 28, 28] → float, augmented in [0, 1] (zero padding is black), then standardized."""
    x = images.float().div_(255.0)
    if augmentation is not None:
        x = augmentation(x)
    return (x - MEAN) / STD
