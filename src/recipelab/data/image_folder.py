"""A user's own images: one folder per class under ``root/train/`` and ``root/test/``.

Class names are the sorted folder names (the same set in both splits). Every image (PNG, JPEG, GIF,
WebP) is decoded once, by ``torchvision.io``, into one uint8 tensor [N, C, H, W]; all must share one
size, since nothing is resized (resize them beforehand). Channels: ``channels=1`` or ``3`` converts every
image (colour to grey by luminance, grey to RGB by repeating); by default the first image decides, grey
images among colour ones are repeated to RGB, and a colour image among grey ones is refused (pass
``channels``). An alpha channel is dropped. Before decoding, the memory the tensors will take is
estimated and refused above ``max_memory_gb`` (default: half of the memory available now).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image, read_file

from recipelab.data.dataset import ImageDataset, channel_stats, reason
from recipelab.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp")  # other files (and hidden ones) are skipped
LAYOUT = "expected root/train/<class>/<image> and root/test/<class>/<image>, the same class folders in both"
MODES = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}


def _listing(root: Path) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
    """Class names and, per split, (file, label) sorted by class then name."""
    splits: dict[str, dict[str, list[Path]]] = {}
    for split in ("train", "test"):
        folder = root / split
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if not classes:
            raise UserError(f"image folder {root}: no class folders in {folder}; {LAYOUT}")
        splits[split] = {
            c: sorted(
                p for p in (folder / c).iterdir() if p.suffix.lower() in EXTENSIONS and p.name[0] != "."
            )
            for c in classes
        }
    train, test = (tuple(splits[s]) for s in ("train", "test"))
    if train != test:
        only = sorted(set(train) ^ set(test))
        raise UserError(
            f"image folder {root}: train/ and test/ differ in classes ({', '.join(only)}); {LAYOUT}"
        )
    for split, classes in splits.items():
        empty = [c for c, files in classes.items() if not files]
        if empty:
            raise UserError(
                f"image folder {root}: {split}/{empty[0]} holds no images ({'/'.join(EXTENSIONS)})"
            )
    files = {s: [(f, label) for label, c in enumerate(train) for f in splits[s][c]] for s in splits}
    return train, files


def _decode(path: Path, mode: ImageReadMode = ImageReadMode.UNCHANGED) -> torch.Tensor:
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: cannot read it (permission denied)")
    try:
        image = decode_image(read_file(str(path)), mode=mode)
    except (RuntimeError, ValueError, OSError) as err:
        raise UserError(f"{path}: not a readable image, truncated or corrupt ({reason(err)})") from err
    return image[:3] if image.shape[0] == 4 else image[:1] if image.shape[0] == 2 else image  # no alpha


def available_memory() -> int:
    """Bytes of memory available now (free pages)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _check_memory(root: Path, count: int, shape: tuple[int, ...], max_memory_gb: float | None) -> None:
    limit = max_memory_gb * 1e9 if max_memory_gb is not None else available_memory() / 2
    needed = count * shape[0] * shape[1] * shape[2]
    if needed > limit:
        which = f"max_memory_gb={max_memory_gb}" if max_memory_gb is not None else "half the available memory"
        raise UserError(
            f"image folder {root}: {count} images of {'×'.join(map(str, shape))} need {needed / 1e9:.3g} GB "
            f"in memory, more than {which} ({limit / 1e9:.3g} GB); use fewer or smaller images "
            "(they are not resized) or raise max_memory_gb"
        )


def _stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``channel_stats`` in chunks (it copies its input as float64), merged with Chan et al.'s formula."""
    pixels = images[0, 0].numel()
    parts = [(len(x) * pixels, *map(torch.DoubleTensor, channel_stats(x))) for x in images.split(chunk)]
    n = sum(k for k, _, _ in parts)
    mean = sum(k * m for k, m, _ in parts) / n
    m2 = sum((k - 1) * s**2 + k * (m - mean) ** 2 for k, m, s in parts)
    return tuple(mean.tolist()), tuple((m2 / (n - 1)).sqrt().tolist())


def _fill(files: list[tuple[Path, int]], shape, mode, first: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.empty(len(files), *shape, dtype=torch.uint8)
    for i, (path, _) in enumerate(files):
        image = _decode(path, mode)
        if image.shape[1:] != shape[1:]:
            raise UserError(
                f"images differ in size: {first} is {shape[1]}×{shape[2]}, {path} is {image.shape[1]}×"
                f"{image.shape[2]}; all must share one size (they are not resized)"
            )
        if image.shape[0] != shape[0]:
            if image.shape[0] == 3:  # colour among grey images
                raise UserError(
                    f"{path} is colour but {first} is grey: pass channels=3 (greys repeated to RGB) "
                    "or channels=1 (colours to grey)"
                )
            image = image.expand(3, -1, -1)  # grey among colour images: repeated to RGB
        images[i] = image
    return images, torch.tensor([label for _, label in files], dtype=torch.int64)


def load_image_folder(
    root: str, max_memory_gb: float | None = None, channels: int | None = None
) -> ImageDataset:
    """``root/{train,test}/<class>/*`` as uint8 [N, C, H, W]; mean and std measured on the training images."""
    path = Path(root)
    if not path.is_dir():
        raise UserError(f"image folder {root} not found: {LAYOUT}")
    if channels not in (None, 1, 3):
        raise UserError(f"channels={channels}: choose 1 (grey), 3 (RGB) or null (the first image's)")
    classes, files = _listing(path)
    first = files["train"][0][0]
    mode = MODES.get(channels, ImageReadMode.UNCHANGED)
    shape = tuple(_decode(first, mode).shape)
    _check_memory(path, len(files["train"]) + len(files["test"]), shape, max_memory_gb)
    train = _fill(files["train"], shape, mode, first)
    test = _fill(files["test"], shape, mode, first)
    mean, std = _stats(train[0])
    return ImageDataset(*train, *test, classes=classes, mean=mean, std=std)
