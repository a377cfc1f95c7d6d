"""Dataset loaders on files the tests write in each dataset's published on-disk format."""

import gzip
import io
import os
import pickle
import struct
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import write_png

from recipelab.data import cifar
from recipelab.data.cifar import load_cifar10, load_cifar100
from recipelab.data.dataset import channel_stats
from recipelab.data.idx import KMNIST_CLASSES, load_kmnist, load_mnist
from recipelab.data.image_folder import load_image_folder
from recipelab.errors import UserError

MNIST, CIFAR10, CIFAR100 = (partial(f, download=False) for f in (load_mnist, load_cifar10, load_cifar100))


def _refused(load, root: Path, *match: str, **kwargs) -> None:
    """``load(root)`` raises a one-line UserError that contains every ``match``."""
    with pytest.raises(UserError) as err:
        load(str(root), **kwargs)
    assert "\n" not in str(err.value) and all(m in str(err.value) for m in match), str(err.value)


def _idx(array: np.ndarray) -> bytes:
    """IDX: magic 0x00000803 (images) or 0x00000801 (labels), big-endian sizes, then the uint8 values."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _idx_folder(folder: Path, gz: bool = False) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    images[0] = np.arange(28 * 28).reshape(28, 28) % 256  # a known image
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    arrays = {"train-images-idx3-ubyte": images[:5], "t10k-images-idx3-ubyte": images[5:]}
    arrays |= {"train-labels-idx1-ubyte": labels[:5], "t10k-labels-idx1-ubyte": labels[5:]}
    for name, array in arrays.items():
        data = _idx(array)
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


@pytest.mark.parametrize(
    ("load", "layout", "classes", "stats"),
    [  # MNIST: plain files in root; KMNIST: gzipped, in torchvision's layout under download_dir
        (MNIST, "", tuple("0123456789"), ((0.1307,), (0.3081,))),
        (partial(load_kmnist, None, download=False), "KMNIST/raw", KMNIST_CLASSES, ((0.1918,), (0.3483,))),
    ],
)
def test_idx_datasets_read_their_files(tmp_path, load, layout, classes, stats):
    arrays = _idx_folder(tmp_path / layout, gz=bool(layout))
    assert _idx(arrays["train-images-idx3-ubyte"])[:4] == (2051).to_bytes(4, "big")  # the magic numbers
    assert _idx(arrays["train-labels-idx1-ubyte"])[:4] == (2049).to_bytes(4, "big")
    ds = load(str(tmp_path))
    assert ds.train_images.shape == (5, 1, 28, 28) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (3, 1, 28, 28) and ds.train_labels.dtype == torch.int64
    assert torch.equal(ds.train_images[0, 0], torch.arange(28 * 28).view(28, 28) % 256)
    assert torch.equal(ds.test_images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert ds.train_labels.tolist() == [3, 1, 4, 1, 5] and ds.test_labels.tolist() == [9, 2, 6]
    assert ds.classes == classes and (ds.mean, ds.std) == stats


def test_idx_errors_name_the_file_and_the_cause(tmp_path, monkeypatch):
    _refused(MNIST, tmp_path, "MNIST not found", "download", "t10k-images-idx3-ubyte")
    _idx_folder(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    _refused(MNIST, tmp_path, str(images), "truncated")
    images.write_bytes(_idx(np.zeros((5, 20, 20))))
    _refused(MNIST, tmp_path, str(images), "20×20, expected 28×28")
    images.write_bytes(_idx(np.zeros(5)))  # a label file where images belong
    _refused(MNIST, tmp_path, str(images), "wrong shape")
    images.write_bytes(b"GIF89a not an idx file")
    _refused(MNIST, tmp_path, str(images), "not an IDX file")
    _idx_folder(tmp_path)

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)  # as root, chmod would not stop the read
    _refused(MNIST, tmp_path, str(images), "permission denied")


class _Python2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2's str (SHORT_BINSTRING/BINSTRING), at protocol 2, as the published
    CIFAR files (pickled by Python 2 with numpy 1) have them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        n = len(raw)
        size = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(size + raw)
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_py2_str


def _py2_pickle(path: Path, obj) -> None:
    buf = io.BytesIO()
    _Python2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def _rows(images: np.ndarray) -> np.ndarray:
    """[N, 3, 32, 32] → the published rows: 1024 red values (row by row), then 1024 green, then 1024 blue."""
    return np.stack([np.concatenate([img[0].ravel(), img[1].ravel(), img[2].ravel()]) for img in images])


KNOWN = np.array([10, 20, 30], np.uint8)[:, None, None].repeat(32, 1).repeat(32, 2)  # R, G, B everywhere
KNOWN[0, 0, 5], KNOWN[2, 31, 0] = 255, 254  # but red at row 0 column 5, blue at row 31 column 0


def _cifar10(folder: Path, write=_py2_pickle) -> tuple[np.ndarray, list[int]]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (13, 3, 32, 32), dtype=np.uint8)
    images[0] = KNOWN
    labels = [int(v) for v in rng.integers(0, 10, 13)]
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        part = slice(2 * b, 2 * b + 2 if b < 5 else None)  # 2 images per training batch, 3 in the test batch
        batch = {"batch_label": f"batch {b + 1}", "labels": labels[part], "filenames": [f"{b}.png"]}
        write(folder / name, {**batch, "data": _rows(images[part])})
    write(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": 10000})
    return images, labels


def test_cifar10_reads_the_published_pickles(tmp_path):
    images, labels = _cifar10(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):  # the folder above, or the folder itself
        ds = CIFAR10(root=str(root))
        assert ds.train_images.shape == (10, 3, 32, 32) and ds.test_images.shape == (3, 3, 32, 32)
        assert torch.equal(ds.train_images[0], torch.from_numpy(KNOWN))
        assert ds.train_images[0, :, 1, 1].tolist() == [10, 20, 30]  # R, G, B
        assert torch.equal(ds.test_images, torch.from_numpy(images[10:]))
        assert ds.train_labels.tolist() == labels[:10] and ds.test_labels.tolist() == labels[10:]
        assert ds.train_labels.dtype == torch.int64 and ds.classes[::9] == ("airplane", "truck")
        assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2470, 0.2435, 0.2616)


def test_cifar100_reads_a_pickle_dump_of_the_published_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = np.random.default_rng(2).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    images[1] = KNOWN
    for name, part, fine in (("train", images[:4], [0, 99, 42, 7]), ("test", images[4:], [5, 6])):
        entry = {b"filenames": [b"x.png"] * len(part), b"batch_label": b"b", b"fine_labels": fine}
        entry |= {b"coarse_labels": [0] * len(part), b"data": _rows(part)}
        (folder / name).write_bytes(pickle.dumps(entry))  # Python 3's default protocol, bytes keys
    names = {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": []}
    (folder / "meta").write_bytes(pickle.dumps(names))
    ds = CIFAR100(download_dir=str(tmp_path))
    assert torch.equal(ds.train_images, torch.from_numpy(images[:4])) and len(ds.test_images) == 2
    assert ds.train_images[1, :, 1, 1].tolist() == [10, 20, 30]
    assert ds.train_labels.tolist() == [0, 99, 42, 7] and ds.test_labels.tolist() == [5, 6]
    assert len(ds.classes) == 100 and ds.classes[99] == "c99" and ds.mean == (0.5071, 0.4865, 0.4409)


def test_a_pickle_that_calls_a_function_is_refused_unrun(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _cifar10(folder)
    marker = tmp_path / "pwned"
    payload = type("Payload", (), {"__reduce__": lambda self: (os.system, (f"touch {marker}",))})()
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": payload, "labels": [1]}))
    _refused(CIFAR10, tmp_path, "data_batch_3", "refused", "system")
    assert not marker.exists()
    # the same call through the plain unpickler would run it: the check above is not vacuous
    pickle.loads((folder / "data_batch_3").read_bytes())
    assert marker.exists()


def test_cifar_errors_name_the_file_and_the_cause(tmp_path, monkeypatch):
    _refused(CIFAR10, tmp_path, "CIFAR-10 not found", "download", "cifar-10-batches-py/", "data.root")
    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "meta").write_bytes(b"")
    _refused(CIFAR100, tmp_path, "lacks train, test")
    folder = tmp_path / "cifar-10-batches-py"
    _cifar10(folder)
    batch = folder / "data_batch_2"
    raw = batch.read_bytes()
    batch.write_bytes(raw[: len(raw) // 2])
    _refused(CIFAR10, tmp_path, str(batch), "truncated or corrupt")
    _py2_pickle(batch, {"data": np.zeros((2, 1024), np.uint8), "labels": [0, 1]})
    _refused(CIFAR10, tmp_path, str(batch), "wrong shape", "[2, 1024]")
    _py2_pickle(batch, {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1, 2]})
    _refused(CIFAR10, tmp_path, str(batch), "labels for 2 images")

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cifar, "open", denied, raising=False)  # as root, chmod would not stop the read
    _refused(CIFAR10, tmp_path, "batches.meta", "permission denied")


def _image_folder(root: Path) -> dict:
    """root/{train,test}/{cat,dog}/*.png: 3 colour training images per class, 1 test image per class."""
    g, made = torch.Generator().manual_seed(3), {}
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("dog", "cat"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                image = made[f"{split}/{cls}/{i}.png"] = torch.randint(0, 256, (3, 6, 5), generator=g).byte()
                write_png(image, str(root / split / cls / f"{i}.png"))
    return made


def test_image_folder_reads_one_folder_per_class_and_its_channels(tmp_path):
    made = _image_folder(tmp_path)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_image_folder(str(tmp_path))
    assert ds.classes == ("cat", "dog")  # sorted folder names; labels follow them
    assert ds.train_images.shape == (6, 3, 6, 5) and ds.test_images.shape == (2, 3, 6, 5)
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1] and ds.test_labels.tolist() == [0, 1]
    assert torch.equal(ds.train_images[4], made["train/dog/1.png"])  # pixels and channel order exact
    assert torch.equal(ds.test_images[0], made["test/cat/0.png"])
    mean, std = channel_stats(ds.train_images)
    assert np.allclose(ds.mean, mean) and np.allclose(ds.std, std)
    write_png(made["train/dog/2.png"][:1], str(tmp_path / "train" / "dog" / "2.png"))  # one grey image
    ds = load_image_folder(str(tmp_path))
    assert torch.equal(ds.train_images[5], made["train/dog/2.png"][:1].expand(3, -1, -1))  # repeated to RGB
    assert load_image_folder(str(tmp_path), channels=1).train_images.shape == (6, 1, 6, 5)
    write_png(made["train/cat/0.png"][:1], str(tmp_path / "train" / "cat" / "0.png"))  # the first now grey
    _refused(load_image_folder, tmp_path, "is colour but", "channels=3")
    assert load_image_folder(str(tmp_path), channels=3).train_images.shape == (6, 3, 6, 5)


def test_image_folder_refusals(tmp_path):
    _refused(load_image_folder, tmp_path / "nowhere", "not found", "root/train/<class>/")
    _refused(load_image_folder, tmp_path, "no class folders", "root/test/<class>")
    _image_folder(tmp_path)
    needed = f"{(8 * 3 * 6 * 5) / 1e9:.3g} GB"
    _refused(load_image_folder, tmp_path, needed, "max_memory_gb=1e-09", max_memory_gb=1e-9)
    odd = tmp_path / "test" / "dog" / "0.png"
    write_png(torch.zeros(3, 7, 5, dtype=torch.uint8), str(odd))
    _refused(load_image_folder, tmp_path, "0.png is 6×5", f"{odd} is 7×5", "not resized")
    odd.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    _refused(load_image_folder, tmp_path, str(odd), "corrupt")
    (tmp_path / "test" / "bird").mkdir()
    _refused(load_image_folder, tmp_path, "differ in classes (bird)")
