"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009): 50k/10k colour 32×32 images, from the python version.

The published files are pickles (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``, ``batches.meta``;
``cifar-100-python/train``, ``test``, ``meta``) of dicts holding ``data`` (uint8 [N, 3072]: the red, then
green, then blue plane of each image, rows first) and the labels. A data folder is untrusted input, so
they are read by an unpickler that builds plain data and numpy arrays only and refuses every other global:
nothing in a file is run. Found, in order: in ``root`` (the folder that holds ``cifar-10-batches-py/``,
or that folder itself), in ``download_dir``, then fetched there by torchvision's download (archive and
checksum of ``torchvision.datasets.CIFAR10``/``CIFAR100``; their constructors would unpickle without limits).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import download_and_extract_archive

from recipelab.data.dataset import ImageDataset, reason
from recipelab.errors import UserError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct


class Refused(pickle.UnpicklingError):
    """A pickle named a global outside ``ALLOWED``, or called one with other arguments than it allows."""


def latin1_bytes(*args) -> bytes:
    """``_codecs.encode`` as Python 3's pickler calls it for bytes at protocol 2 (``encode(text,
    'latin1')``: each character one byte), and only so."""
    if len(args) != 2 or not isinstance(args[0], str) or args[1] != "latin1":
        raise Refused("_codecs.encode with other arguments than (text, 'latin1')")
    return args[0].encode("latin-1")


def empty_bytes(*args) -> bytes:
    """``bytes()`` as that pickler calls it for ``b""`` (no arguments), and only so."""
    if args:
        raise Refused("__builtin__.bytes with arguments")
    return b""


# What a pickled numpy array needs, and nothing else: the published files name numpy 1's module, numpy 2
# writes its own. dtype and ndarray are called with the file's arguments; neither runs anything else.
# A file re-saved by Python 3 at protocol 2 writes bytes (keys, names, an array's data) as calls of
# _codecs.encode and __builtin__.bytes: each stands in by a function that builds those bytes only.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): latin1_bytes,
    ("__builtin__", "bytes"): empty_bytes,
}


class DataUnpickler(pickle.Unpickler):
    """Dicts, lists, strings, bytes, numbers and numpy arrays; any other class or function is refused."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise Refused(f"{module}.{name}") from None


def read_pickle(path: Path) -> dict:
    """One CIFAR file as a dict with str keys; any problem is a one-line UserError naming the file."""
    try:
        with open(path, "rb") as f:
            entry = DataUnpickler(f, encoding="bytes").load()
    except PermissionError as err:
        raise UserError(f"{path}: cannot read it ({reason(err)})") from err
    except Refused as err:
        raise UserError(
            f"{path}: refused, it asks to load {err} (only plain data and numpy arrays are read from a data "
            "file; nothing in it is run)"
        ) from err
    except Exception as err:  # a damaged pickle can fail in many ways; all of them mean the same here
        raise UserError(f"{path}: truncated or corrupt ({reason(err)})") from err
    if not isinstance(entry, dict):
        raise UserError(f"{path}: holds a {type(entry).__name__}, not the dict of a CIFAR file")
    return {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


@dataclass(frozen=True)
class Cifar:
    title: str
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    names_key: str
    labels_key: str
    classes: int
    mean: tuple[float, float, float]  # published statistics of the training images
    std: tuple[float, float, float]
    source: type  # the torchvision class whose archive, file name and checksum the download uses

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, self.test, self.meta)


CIFAR10_SPEC = Cifar(
    "CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
    "batches.meta", "label_names", "labels", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10,
)  # fmt: skip
CIFAR100_SPEC = Cifar(
    "CIFAR-100", "cifar-100-python", ("train",), "test", "meta", "fine_label_names", "fine_labels", 100,
    (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), CIFAR100,
)  # fmt: skip


def _batch(path: Path, spec: Cifar) -> tuple[np.ndarray, np.ndarray]:
    entry = read_pickle(path)
    data, labels = entry.get("data"), entry.get(spec.labels_key)
    if data is None or labels is None:
        raise UserError(
            f"{path}: no 'data' and {spec.labels_key!r} entries (found {sorted(map(str, entry))})"
        )
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{path}: wrong shape, data is {found}, expected uint8 [N, 3072] (3×32×32 per row)")
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise UserError(f"{path}: wrong shape, {labels.shape} {labels.dtype} labels for {len(data)} images")
    if len(labels) and not 0 <= labels.min() <= labels.max() < spec.classes:
        raise UserError(
            f"{path}: labels must lie in [0, {spec.classes}), found {labels.min()}..{labels.max()}"
        )
    return data, labels


def _split(folder: Path, names: tuple[str, ...], spec: Cifar) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = zip(*(_batch(folder / name, spec) for name in names), strict=True)
    images = torch.from_numpy(np.concatenate(data)).view(-1, 3, 32, 32)  # R, G, B planes of rows
    return images, torch.from_numpy(np.concatenate(labels).astype(np.int64))


def _classes(path: Path, spec: Cifar) -> tuple[str, ...]:
    names = read_pickle(path).get(spec.names_key)
    if not isinstance(names, list) or len(names) != spec.classes:
        raise UserError(f"{path}: expected {spec.names_key!r}, a list of {spec.classes} class names")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


def _candidate(base: Path, spec: Cifar) -> Path:
    return base if base.name == spec.folder or (base / spec.meta).is_file() else base / spec.folder


def locate(spec: Cifar, root=None, download_dir=None, download: bool = True) -> Path:
    """The folder with all of ``spec``'s files: in ``root``, in ``download_dir``, else downloaded there."""
    partial = ""
    for base in [Path(p) for p in (root, download_dir) if p]:
        folder = _candidate(base, spec)
        missing = [name for name in spec.files if not (folder / name).is_file()]
        if not missing:
            return folder
        if len(missing) < len(spec.files) and not partial:
            partial = f"; {folder} lacks {', '.join(missing)}"
    target, failed = download_dir or root, ""
    if download and target:
        source = spec.source
        try:
            download_and_extract_archive(
                source.url, str(target), filename=source.filename, md5=source.tgz_md5
            )
        except Exception as err:  # any network or archive failure ends in the one message below
            failed = f"; the download into {target} failed ({reason(err)})"
        else:
            if all((Path(target) / spec.folder / name).is_file() for name in spec.files):
                return Path(target) / spec.folder
    raise UserError(
        f"{spec.title} not found{partial}{failed}: put the folder {spec.folder}/ of the python version "
        "(https://www.cs.toronto.edu/~kriz/cifar.html) in data.root, or let torchvision download it "
        "(download=true, into download_dir)"
    )


def load_cifar(spec: Cifar, root=None, download_dir=None, download: bool = True) -> ImageDataset:
    folder = locate(spec, root, download_dir, download)
    classes = _classes(folder / spec.meta, spec)
    train, test = _split(folder, spec.train, spec), _split(folder, (spec.test,), spec)
    return ImageDataset(*train, *test, classes=classes, mean=spec.mean, std=spec.std)


def load_cifar10(
    root: str | None = None, download_dir: str | None = None, download: bool = True
) -> ImageDataset:
    """CIFAR-10: 50k/10k colour 32×32 images of 10 classes (airplane … truck)."""
    return load_cifar(CIFAR10_SPEC, root, download_dir, download)


def load_cifar100(
    root: str | None = None, download_dir: str | None = None, download: bool = True
) -> ImageDataset:
    """CIFAR-100: 50k/10k colour 32×32 images of 100 fine classes (the 20 coarse ones are not used)."""
    return load_cifar(CIFAR100_SPEC, root, download_dir, download)
