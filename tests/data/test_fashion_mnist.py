from collections import Counter

import pytest
import torch

from recipelab.data import TensorBatchLoader
from recipelab.data import fashion_mnist as fm
from recipelab.errors import UserError
from tests.conftest import fashion_dm


def _rows(images: torch.Tensor) -> Counter:
    return Counter(bytes(row) for row in images.reshape(len(images), -1).numpy())


def test_real_fashion_mnist_splits(fashion_train):
    dm = fashion_dm(val_size=5000)
    dm.setup()
    (xt, yt), (xv, yv), (xs, ys) = dm.splits["train"], dm.splits["val"], dm.splits["test"]
    assert (
        xt.shape == (55_000, 1, 28, 28) and xv.shape == (5_000, 1, 28, 28) and xs.shape == (10_000, 1, 28, 28)
    )
    assert xt.dtype == torch.uint8 and yt.dtype == torch.int64
    for y in (yt, yv, ys):
        assert y.min() == 0 and y.max() == 9
    assert torch.bincount(ys).tolist() == [1000] * 10  # the real test set is balanced
    # train and val partition the 60k images: together they are exactly the original multiset
    images, labels = fashion_train
    assert _rows(xt) + _rows(xv) == _rows(images)
    assert torch.equal(
        torch.bincount(yt, minlength=10) + torch.bincount(yv, minlength=10), torch.bincount(labels)
    )


def test_split_is_fixed_by_its_own_seed():
    a, b = fashion_dm(shuffle_seed=1), fashion_dm(shuffle_seed=2)
    c = fashion_dm(split_seed=7)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.splits["val"][0], b.splits["val"][0])
    assert not torch.equal(a.splits["val"][0], c.splits["val"][0])


def test_train_size_limits_training_set_only():
    dm = fashion_dm(train_size=2000, batch_size=128)
    dm.setup()
    assert dm.num_train == 2000 and len(dm.splits["val"][1]) == 5000
    assert len(dm.train_dataloader()) == 16  # ceil(2000 / 128)


def test_loader_covers_every_sample_once_per_epoch_and_reshuffles():
    x = torch.arange(100).view(100, 1, 1, 1)
    loader = TensorBatchLoader(x, torch.arange(100), batch_size=32, shuffle=True, seed=3)
    first = torch.cat([yb for _, yb in loader])
    assert sorted(first.tolist()) == list(range(100)) and len(loader) == 4
    again = torch.cat([yb for _, yb in loader])
    loader.sampler.set_epoch(1)
    second = torch.cat([yb for _, yb in loader])
    assert torch.equal(first, again) and not torch.equal(first, second)


def test_loader_shards_are_disjoint_across_ranks():
    shards = [
        torch.cat(
            [
                yb
                for _, yb in TensorBatchLoader(
                    torch.zeros(10, 1, 1, 1), torch.arange(10), 2, shuffle=True, rank=r, world_size=2
                )
            ]
        )
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 5
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())


def test_missing_data_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(UserError, match="Fashion-MNIST not found.*dataset-fashion-mnist"):
        fm.load(root=tmp_path, download=False)


def test_root_with_files_is_used_first(tmp_path, monkeypatch):
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / f"{name}.gz").symlink_to(fm.DEBIAN_DIR / f"{name}.gz")
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    data = fm.load(root=tmp_path, download=False)
    assert data.test_images.shape == (10_000, 1, 28, 28) and len(data.test_labels) == 10_000
