"""Datasets as plug-ins: every dataset option trains through the command line on files written in its
published format; k-fold splits; colour-only augmentation refused on grey data; no dataset named outside
data/."""

import re
from pathlib import Path

import pytest
import torch

from recipelab.data import InMemoryDataModule
from recipelab.data.dataset import ImageDataset
from recipelab.errors import UserError
from recipelab.records.folder import CONF_DIR
from recipelab.run.validate import preflight
from tests.conftest import ROOT, train_cli
from tests.data.test_loaders import _cifar10, _idx_folder, _image_folder

TINY = ["trainer=quiet", "logger=csv", "trainer.max_epochs=1", "data.batch_size=2", "data.val_size=1"]


def _cifar100(folder: Path) -> None:
    import pickle

    import numpy as np

    folder.mkdir(parents=True)
    images = np.random.default_rng(2).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    rows = images.reshape(6, -1)  # planes R, G, B one after the other, as published
    for name, part, fine in (("train", slice(0, 4), [0, 99, 42, 7]), ("test", slice(4, 6), [5, 6])):
        (folder / name).write_bytes(pickle.dumps({b"data": rows[part], b"fine_labels": fine}))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}))


DATASETS = {  # option: (write the files under a root, overrides for that tiny copy)
    "mnist": (lambda root: _idx_folder(root), ["data.train_count=5"]),
    "kmnist": (lambda root: _idx_folder(root, gz=True), ["data.train_count=5"]),
    "cifar10": (lambda root: _cifar10(root / "cifar-10-batches-py"), ["data.train_count=10"]),
    "cifar100": (lambda root: _cifar100(root / "cifar-100-python"), ["data.train_count=4"]),
    "image_folder": (
        lambda root: _image_folder(root),
        [
            "data.in_channels=3",
            "data.num_classes=2",
            "data.image_size=6",
            "data.train_count=6",
            "data.val_size=2",
        ],
    ),
}


@pytest.mark.parametrize("option", sorted(DATASETS))
def test_every_dataset_trains_the_cnn_for_an_epoch(tmp_path, option):
    write, overrides = DATASETS[option]
    root = tmp_path / "files"
    write(root)
    run = train_cli(
        tmp_path / "logs", f"data={option}", f"data.root={root}", "data.dataset.download=false", *TINY,
        *overrides, quick=False,
    ) if option != "image_folder" else train_cli(
        tmp_path / "logs", f"data={option}", f"data.root={root}", *TINY, *overrides, quick=False
    )  # fmt: skip
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    record = run.metrics()
    assert record["status"] == "completed" and record["groups"]["data"] == option
    assert 0 <= record["metrics"]["test/acc"] <= 1 and record["steps"] >= 1


def _dataset(n: int) -> ImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    labels = torch.arange(n) % 3
    return ImageDataset(images, labels, images[:3], labels[:3], ("a", "b", "c"), (0.5,), (0.25,))


def test_folds_are_disjoint_and_cover_the_training_set():
    n, k = 23, 5
    vals, trains = [], []
    for fold in range(k):
        dm = InMemoryDataModule(lambda root: _dataset(n), folds=k, fold=fold, batch_size=4)
        dm.setup()
        vals.append(set(dm.splits["val"][0][:, 0, 0, 0].tolist()))
        trains.append(set(dm.splits["train"][0][:, 0, 0, 0].tolist()))
    assert set().union(*vals) == set(range(n)) and sum(len(v) for v in vals) == n  # a partition
    assert all(len(v) in (n // k, n // k + 1) for v in vals)
    assert all(t == set(range(n)) - v for t, v in zip(trains, vals, strict=True))


def test_the_preflight_counts_each_fold_s_training_images():
    """23 images in 5 folds: the first three hold 5, so their runs train on 18, the others on 19."""
    n, k = 23, 5
    for fold in range(k):
        dm = InMemoryDataModule(lambda root: _dataset(n), folds=k, fold=fold, batch_size=4)
        dm.setup()
        sizes = {"train_count": n, "folds": k, "fold": fold}
        assert InMemoryDataModule.check_sizes(batch_size=dm.num_train, **sizes) == dm.num_train
        with pytest.raises(UserError, match=f"must be at most the {dm.num_train} training images"):
            InMemoryDataModule.check_sizes(batch_size=dm.num_train + 1, **sizes)


def test_folds_train_on_different_subsets_of_train_size():
    """With data.train_size each fold trains on that many images from outside its validation fold, as many
    (within one) from each other fold: the folds' subsets differ (folds 1 and 2 of 3 were the same)."""
    n, k, size = 30, 3, 8

    def split(fold: int, **subset) -> tuple[set, list]:
        dm = InMemoryDataModule(lambda root: _dataset(n), folds=k, fold=fold, batch_size=4, **subset)
        dm.setup()
        return set(dm.splits["val"][0][:, 0, 0, 0].tolist()), dm.splits["train"][0][:, 0, 0, 0].tolist()

    vals = [split(fold)[0] for fold in range(k)]
    subsets = []
    for fold in range(k):
        val, train = split(fold, train_size=size)
        assert val == vals[fold] and len(train) == len(set(train)) == size and not val & set(train)
        taken = [len(set(train) & v) for i, v in enumerate(vals) if i != fold]
        assert taken == [size // (k - 1)] * (k - 1), taken
        subsets.append(frozenset(train))
    assert len(set(subsets)) == k


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["data.folds=5", "data.fold=5"], "data.fold=5"),
        (["data.fold=1"], "data.fold=1: needs data.folds"),
        (["augmentation=color_jitter", "augmentation.ops.0.saturation=0.3"], "saturation=0.3: needs colour"),
    ],
)
def test_data_options_that_cannot_work_are_refused_up_front(overrides, named, tmp_path):
    with pytest.raises(UserError, match=re.escape(named)):
        preflight(["train", f"paths.log_dir={tmp_path}", *overrides], CONF_DIR)


def test_no_dataset_is_named_outside_data():
    names = re.compile(r"fashion|mnist|cifar|image_folder", re.IGNORECASE)
    sources = [
        p for p in (ROOT / "src" / "recipelab").rglob("*.py") if "data" not in p.relative_to(ROOT).parts[2:3]
    ]
    named = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in sources
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if names.search(line)
    ]
    assert named == []
