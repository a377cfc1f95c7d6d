"""A large gzipped IDX file is decompressed once and kept in the user's cache (``data/idx.py``): the kept
copy serves the next read, a changed file or a damaged copy is decompressed again, and a cache that cannot
be written changes nothing but the time."""

import gzip
import os

import numpy as np
import pytest
import torch

from recipelab.data import idx
from tests.data.test_loaders import _idx

IMAGES = 1400  # random bytes do not compress: 1400 28x28 images make a gzipped file over idx.KEEP_FROM


def _write(path, seed: int) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, (IMAGES, 28, 28), dtype=np.uint8)
    path.write_bytes(gzip.compress(_idx(images), compresslevel=1))
    return images


def _kept(cache):
    folder = cache / "recipelab" / "idx"
    return sorted(p for p in folder.iterdir() if not p.name.endswith(".part")) if folder.is_dir() else []


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _no_gunzip(monkeypatch):
    def refuse(data):
        raise AssertionError("decompressed although a kept copy was there")

    monkeypatch.setattr(idx.gzip, "decompress", refuse)


def test_the_kept_copy_serves_the_next_read(tmp_path, cache, monkeypatch):
    source = tmp_path / "train-images-idx3-ubyte.gz"
    images = _write(source, seed=0)
    assert source.stat().st_size >= idx.KEEP_FROM
    first = idx.read_idx(source, "images")
    assert torch.equal(first, torch.from_numpy(images))
    [kept] = _kept(cache)
    assert kept.read_bytes() == gzip.decompress(source.read_bytes())
    _no_gunzip(monkeypatch)
    assert torch.equal(idx.read_idx(source, "images"), first)


def test_a_changed_file_is_read_again_and_its_old_copy_removed(tmp_path, cache):
    source = tmp_path / "train-images-idx3-ubyte.gz"
    _write(source, seed=0)
    idx.read_idx(source, "images")
    images = _write(source, seed=1)
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))  # a later version
    assert torch.equal(idx.read_idx(source, "images"), torch.from_numpy(images))
    assert len(_kept(cache)) == 1


def test_a_damaged_copy_is_replaced(tmp_path, cache):
    source = tmp_path / "train-images-idx3-ubyte.gz"
    images = _write(source, seed=2)
    idx.read_idx(source, "images")
    [kept] = _kept(cache)
    kept.write_bytes(kept.read_bytes()[:-100])  # truncated: its length no longer the trailer's
    assert torch.equal(idx.read_idx(source, "images"), torch.from_numpy(images))
    assert kept.read_bytes() == gzip.decompress(source.read_bytes())


def test_an_unwritable_cache_or_a_small_file_keeps_nothing(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    source = tmp_path / "train-images-idx3-ubyte.gz"
    images = _write(source, seed=3)
    assert torch.equal(idx.read_idx(source, "images"), torch.from_numpy(images))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    small = tmp_path / "t10k-images-idx3-ubyte.gz"
    small.write_bytes(gzip.compress(_idx(images[:10])))
    assert torch.equal(idx.read_idx(small, "images"), torch.from_numpy(images[:10]))
    assert _kept(tmp_path / "cache") == []
