"""One DataModule for every dataset: the whole dataset held as uint8 tensors on the training device.

A dataset is a loader function returning an ``ImageDataset`` (see ``dataset.py``); this module does the
rest: the fixed-seed train/val split (or k-fold), ``train_size``, device residency, batches sliced in a
per-epoch permutation, DDP sharding, a resumable loader position, and normalization by the dataset's
own per-channel mean and std. Augmentation (a callable on float batches) runs on training batches only.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch

from recipelab.data.dataset import ImageDataset
from recipelab.data.memory import TensorBatchLoader, prepare_batch
from recipelab.data.shards import per_process_batch
from recipelab.errors import UserError


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class InMemoryDataModule(L.LightningDataModule):
    """``dataset``: the loader (a partial taking ``root``). ``in_channels``, ``num_classes``,
    ``image_size`` and ``train_count`` are what the dataset's YAML declares (models read them by
    interpolation); the loaded data must agree. ``folds``/``fold``: validate on fold ``fold`` of
    ``folds`` over the training set instead of a held-out ``val_size``."""

    def __init__(
        self,
        dataset: Callable[..., ImageDataset],
        root=None,
        batch_size=128,
        eval_batch_size=1000,
        val_size=5000,
        train_size=None,
        split_seed=12345,
        folds=None,
        fold=None,
        in_channels=None,
        num_classes=None,
        image_size=None,
        train_count=None,
        shuffle_seed=0,
        augmentation=None,
    ):
        super().__init__()
        self.dataset, self.root = dataset, root
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.train_size, self.split_seed = val_size, train_size, split_seed
        self.folds, self.fold = folds, fold
        self.declared = {"in_channels": in_channels, "num_classes": num_classes, "image_size": image_size}
        self.train_count = train_count
        self.shuffle_seed = shuffle_seed
        self.augmentation = augmentation
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: tuple[str, ...] = ()
        self._data: ImageDataset | None = None
        self._stats = (torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
        self._train_loader: TensorBatchLoader | None = None
        self._train_position: dict | None = None

    @staticmethod
    def check_sizes(
        batch_size=None,
        val_size=0,
        train_size=None,
        train_count=None,
        folds=None,
        fold=None,
        world_size=1,
        **_,
    ):
        """Sizes that can be checked from the config alone, before any work (``train_count``: declared);
        returns the smallest training batch an epoch holds in a process (its last may be partial; under DDP
        each of ``world_size`` processes trains on an equal shard), None if unknown."""
        if batch_size != "full":  # the whole training set, counted below when it can be
            per_process_batch(batch_size, world_size)
        if folds is not None:
            if not _integer(folds) or folds < 2:
                raise UserError(f"data.folds={folds}: must be null or an integer >= 2")
            if not _integer(fold) or not 0 <= fold < folds:
                raise UserError(
                    f"data.fold={fold}: must be an integer in [0, {folds}) with data.folds={folds}"
                )
        elif fold is not None:
            raise UserError(f"data.fold={fold}: needs data.folds (k of k-fold cross-validation)")
        if train_count is None:
            return None
        if folds is None and not 0 < val_size < train_count:
            raise UserError(f"data.val_size={val_size}: must be in [1, {train_count})")
        # fold i's size as tensor_split cuts it (split): the first train_count % folds folds hold one more
        n_train = train_count - (train_count // folds + (fold < train_count % folds) if folds else val_size)
        if train_size is not None:
            n_train = min(n_train, train_size)
        if _integer(batch_size) and batch_size > n_train:
            raise UserError(f"data.batch_size={batch_size}: must be at most the {n_train} training images")
        if not (_integer(batch_size) or batch_size == "full"):
            return None
        if batch_size == "full" and n_train % world_size:
            raise UserError(
                f"data.batch_size=full: under DDP the {n_train} training images must divide among the "
                f"{world_size} processes; choose data.train_size"
            )
        batch, n = (n_train if batch_size == "full" else batch_size) // world_size, n_train // world_size
        return min(batch, n % batch or batch)

    def load(self) -> ImageDataset:
        """The whole dataset, loaded once, checked against what its config declares."""
        if self._data is None:
            data = self.dataset(root=self.root)
            channels, height, width = data.shape
            found = {"in_channels": channels, "num_classes": len(data.classes), "image_size": height}
            for key, value in self.declared.items():
                if value is not None and value != found[key]:
                    raise UserError(f"data.{key}={value}: the dataset has {found[key]}")
            if self.train_count is not None and self.train_count != len(data.train_labels):
                raise UserError(
                    f"data.train_count={self.train_count}: the dataset has {len(data.train_labels)}"
                )
            self._data = data
        return self._data

    def prepare_data(self) -> None:
        self.load()  # rank 0 first: a download happens once

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        data = self.load()
        train_idx, val_idx = self.split(len(data.train_labels))
        if self.train_size:
            train_idx = train_idx[: self.train_size]
        images, labels = data.train_images, data.train_labels
        self.splits["train"] = (images[train_idx], labels[train_idx])
        self.splits["val"] = (images[val_idx], labels[val_idx])
        self.splits["test"] = (data.test_images, data.test_labels)
        self.classes = data.classes
        shape = (1, -1, 1, 1)
        self._stats = (torch.tensor(data.mean).view(shape), torch.tensor(data.std).view(shape))
        if self.trainer is not None:  # resident on the training device: no per-step host→device copies
            self.to(self.trainer.strategy.root_device)

    def to(self, device) -> InMemoryDataModule:
        """Move the splits (and the normalization constants) to ``device``."""
        self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}
        self._stats = tuple(t.to(device) for t in self._stats)
        return self

    def split(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, val) indices. The split has its own seed: changing the run's seed never moves samples
        across it. With k folds, fold i of a fixed permutation is the validation set."""
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        if self.folds:
            parts = perm.tensor_split(self.folds)
            others = [p for i, p in enumerate(parts) if i != self.fold]
            if not self.train_size:
                return torch.cat(others), parts[self.fold]
            # the first train_size images come from every other fold in turn: taken in fold order, every
            # fold but the first would train on the first fold's images, the same subset
            turn = torch.cat([torch.arange(len(p)) * len(others) + j for j, p in enumerate(others)])
            return torch.cat(others)[turn.argsort()], parts[self.fold]
        return perm[self.val_size :], perm[: self.val_size]

    @property
    def num_train(self) -> int:
        return len(self.splits["train"][1])

    @property
    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The dataset's per-channel mean and std, shaped [1, C, 1, 1], on the splits' device."""
        return self._stats

    def prepare(self, images: torch.Tensor, augment: bool = False, **where) -> torch.Tensor:
        """uint8 images → standardized floats (augmented when ``augment`` and an augmentation is set;
        ``where``: the samples' ``index`` and the ``epoch``, for the ops that use them)."""
        return prepare_batch(images, *self._stats, self.augmentation if augment else None, **where)

    def _loader(self, split: str, batch_size: int, train: bool, seed: int | None = None) -> TensorBatchLoader:
        """Under DDP each rank takes its shard: equal shards of the epoch's permutation for training,
        every world_size-th sample for evaluation (each sample once; the metrics sync across ranks)."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return TensorBatchLoader(
            *self.splits[split],
            batch_size=batch_size,
            shuffle=train,
            drop_last=False,
            seed=self.shuffle_seed if seed is None else seed,
            rank=rank,
            world_size=world,
            even=train,
            with_index=train,
        )

    def _train_batches(self):
        return self._loader("train", self.batch_size, train=True)

    def train_dataloader(self):
        self._train_loader = self._train_batches()
        if self._train_position:
            self._train_loader.load_state_dict(self._train_position)
            self._train_position = None
        return self._train_loader

    # Checkpointed with the run (Lightning calls these): the augmentation's generator, and the training
    # loader's position, which Lightning's own loader-state path drops when configure_optimizers asks for
    # trainer.estimated_stepping_batches (Lightning issue 20550), as the schedulers here do.
    def state_dict(self) -> dict:
        state = {"train_loader": self._train_loader.state_dict()} if self._train_loader else {}
        return state | self._augmentation_state()

    def load_state_dict(self, state: dict) -> None:
        self._load_augmentation_state(state)
        self._train_position = state.get("train_loader")
        if self._train_loader is not None and self._train_position:  # a loader made before the restore
            self._train_loader.load_state_dict(self._train_position)

    def _augmentation_state(self) -> dict:
        return {"augmentation": self.augmentation.state_dict()} if self.augmentation is not None else {}

    def _load_augmentation_state(self, state: dict) -> None:
        if self.augmentation is not None and "augmentation" in state:
            self.augmentation.load_state_dict(state["augmentation"])

    def val_dataloader(self):
        return self._loader("val", self.eval_batch_size, train=False)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size, train=False)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        images, labels, *index = batch  # training batches carry their samples' indices
        training = self.trainer is not None and self.trainer.training
        if not (training and index):
            return self.prepare(images, augment=training), labels
        return self.prepare(images, augment=True, index=index[0], epoch=self.trainer.current_epoch), labels
