"""Datasets in the IDX format of MNIST (LeCun et al.): four files, plain or gzipped.

``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte`` (each possibly with ``.gz``), read with torchvision's IDX readers. A dataset is
found, in order, in ``root``, in ``download_dir`` (also in torchvision's layout ``<folder>/<Name>/raw/``),
then fetched by torchvision's download into ``download_dir``. ``load_idx`` reads one folder; MNIST and
KMNIST are thin functions over it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torchvision.datasets import KMNIST, MNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from recipelab.data.dataset import ImageDataset, reason
from recipelab.errors import UserError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_CLASSES = tuple(str(d) for d in range(10))
KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")  # Kuzushiji-MNIST's hiragana


def find_idx(folder: Path, name: str, raw: str | None = None) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, also under torchvision's ``folder/<raw>/raw/``."""
    folders = [folder] + ([folder / raw / "raw"] if raw else [])
    for candidate in (f / n for f in folders for n in (name, f"{name}.gz")):
        if candidate.is_file():
            return candidate
    return None


def has_idx(folder: Path, raw: str | None = None) -> bool:
    return all(find_idx(folder, name, raw) for pair in IDX_FILES.values() for name in pair)


READERS = {"images": (read_image_file, 3), "labels": (read_label_file, 1)}  # and the IDX rank


def _check_header(data: bytes, rank: int, what: str, path: Path) -> list[int]:
    """The IDX header (magic 0x0000 08 <rank>, then <rank> big-endian sizes) against the file's length;
    returns the sizes."""
    if len(data) < 4 or data[:2] != b"\0\0" or not 0x08 <= data[2] <= 0x0E:
        raise UserError(f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'})")
    if data[2] != 0x08 or data[3] != rank:
        found = f"rank {data[3]} of type 0x{data[2]:02x}"
        raise UserError(f"{path}: wrong shape for {what}: IDX {found}, expected rank {rank} of uint8 (0x08)")
    sizes = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    needed = 4 + 4 * rank + torch.Size(sizes).numel()
    if len(data) < needed:
        raise UserError(f"{path}: truncated, {len(data)} of {needed} bytes")
    return sizes


KEEP_FROM = 1 << 20  # a gzipped file this large or larger is kept decompressed; a smaller one takes < 10 ms


def _decompressed(path: Path) -> bytes:
    """The bytes of the gzipped ``path``. A large one is kept decompressed in the user's cache
    (``$XDG_CACHE_HOME/recipelab/idx``, else ``~/.cache/recipelab/idx``): decompressing Fashion-MNIST's
    training images took ~0.25 s of every run's start here, reading the kept copy ~0.02 s. The copy is
    named by the file's path, size and modification time and used only if its length is the one the gzip
    trailer records; read_idx checks its header as it checks any file's. A cache that cannot be written
    is skipped."""
    stat = path.stat()
    if stat.st_size < KEEP_FROM:
        return gzip.decompress(path.read_bytes())
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recipelab" / "idx"
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    version = hashlib.sha256(f"{stat.st_size} {stat.st_mtime_ns}".encode()).hexdigest()[:16]
    kept = folder / f"{path.stem}-{where}-{version}"
    with path.open("rb") as file:  # the trailer's last 4 bytes: the decompressed length modulo 2**32
        file.seek(-4, os.SEEK_END)
        length = int.from_bytes(file.read(4), "little")
    try:
        data = kept.read_bytes()
        if len(data) % 2**32 == length:
            return data
    except OSError:
        pass
    data = gzip.decompress(path.read_bytes())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f"{path.stem}-{where}-*"):  # the copies of the file's earlier versions
            stale.unlink(missing_ok=True)
        partial = kept.with_name(f"{kept.name}.{os.getpid()}.part")  # a sweep's jobs may write it at once
        partial.write_bytes(data)
        partial.replace(kept)
    except OSError:
        pass
    return data


def read_idx(path: Path, what: str) -> torch.Tensor:
    """One IDX file of ``what`` (images or labels); a file it cannot read is a one-line UserError naming
    it (permission, truncation or corruption, wrong shape)."""
    reader, rank = READERS[what]
    try:
        data = _decompressed(path) if path.suffix == ".gz" else path.read_bytes()
    except PermissionError as err:
        raise UserError(f"{path}: cannot read it ({reason(err)})") from err
    except (OSError, EOFError) as err:
        raise UserError(f"{path}: truncated or corrupt ({reason(err)})") from err
    sizes = _check_header(data, rank, what, path)
    if path.suffix != ".gz":
        return reader(str(path))
    # torchvision's IDX readers take a path; a gzipped file's bytes are already here, their header checked
    # above: the uint8 values that follow it are the tensor (a temporary file to reread took ~0.1 s a run)
    count = torch.Size(sizes).numel()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=4 + 4 * rank, count=count).view(sizes)


def _split(folder: Path, split: str, raw: str | None, shape: tuple[int, int] | None, classes: int):
    images_path, labels_path = (find_idx(folder, name, raw) for name in IDX_FILES[split])
    images = read_idx(images_path, "images")
    labels = read_idx(labels_path, "labels").long()
    if shape and tuple(images.shape[1:]) != shape:
        size = "×".join(map(str, images.shape[1:]))
        raise UserError(f"{images_path}: images are {size}, expected {shape[0]}×{shape[1]}")
    if len(labels) != len(images):
        raise UserError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
        raise UserError(f"{labels_path}: labels must lie in [0, {classes}), found {int(labels.max())}")
    return images.unsqueeze(1).contiguous(), labels


def load_idx(
    folder: str | os.PathLike,
    classes: tuple[str, ...],
    mean: float,
    std: float,
    raw: str | None = None,
    shape: tuple[int, int] | None = (28, 28),
) -> ImageDataset:
    """The four IDX files of ``folder`` (or of ``folder/<raw>/raw/``) as a grey dataset [N, 1, H, W]."""
    folder = Path(folder)
    train = _split(folder, "train", raw, shape, len(classes))
    test = _split(folder, "test", raw, shape, len(classes))
    return ImageDataset(*train, *test, classes=classes, mean=(mean,), std=(std,))


def locate_idx(
    title: str,
    source: type,
    root=None,
    download_dir=None,
    download: bool = True,
    extra: Iterable[Path] = (),
    how: str = "",
) -> Path:
    """The first of ``root``, ``download_dir``, ``extra`` (e.g. a distribution's package folder) that holds
    the files, also in the layout of the torchvision class ``source`` (``<folder>/<source name>/raw/``);
    else ``source``'s download into ``download_dir`` (or ``root``); else a UserError (``how``: more ways)."""
    raw = source.__name__
    for folder in [Path(p) for p in (root, download_dir) if p] + list(extra):
        if has_idx(folder, raw):
            return folder
    target, failed = download_dir or root, ""
    if download and target:
        try:
            source(str(target), train=True, download=True)  # fetches all four files
        except Exception as err:  # any network failure ends in the one message below
            failed = f"; the download into {target} failed ({reason(err)})"
        else:
            if has_idx(Path(target), raw):
                return Path(target)
    raise UserError(
        f"{title} not found{failed}: put the four IDX files "
        f"({', '.join(n for pair in IDX_FILES.values() for n in pair)}, plain or .gz) in data.root{how}, "
        "or let torchvision download them (download=true, into download_dir)"
    )


def load_mnist(
    root: str | None = None, download_dir: str | None = None, download: bool = True
) -> ImageDataset:
    """MNIST: 60k/10k grey 28×28 handwritten digits."""
    folder = locate_idx("MNIST", MNIST, root, download_dir, download)
    return load_idx(folder, MNIST_CLASSES, 0.1307, 0.3081, raw="MNIST")


def load_kmnist(
    root: str | None = None, download_dir: str | None = None, download: bool = True
) -> ImageDataset:
    """Kuzushiji-MNIST (Clanuwat et al., 2018): 60k/10k grey 28×28 cursive hiragana, one per class."""
    folder = locate_idx("KMNIST", KMNIST, root, download_dir, download)
    return load_idx(folder, KMNIST_CLASSES, 0.1918, 0.3483, raw="KMNIST")
