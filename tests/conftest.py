"""Shared fixtures: the real Fashion-MNIST, and training runs through the real command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "trainer=quiet",
    "trainer.max_epochs=1",
    "data.train_size=2000",
    "data.batch_size=100",
    "data.val_size=500",
]


@dataclass
class Run:
    proc: subprocess.CompletedProcess
    log_dir: Path

    @property
    def run_dirs(self) -> list[Path]:
        return sorted(p.parent for p in self.log_dir.rglob(".hydra"))

    @property
    def run_dir(self) -> Path:
        (only,) = self.run_dirs
        return only

    def metrics(self, run_dir: Path | None = None) -> dict:
        return json.loads(((run_dir or self.run_dir) / "metrics.json").read_text())


def train_cli(
    log_dir: Path, *overrides: str, quick: bool = True, env: dict | None = None, timeout: int = 300
) -> Run:
    """``python -m recipelab.train`` in a subprocess, its logs under ``log_dir``."""
    flags = [o for o in overrides if o.startswith("-")]  # Hydra's flags go before the overrides
    args = [
        sys.executable,
        "-m",
        "recipelab.train",
        *flags,
        f"paths.log_dir={log_dir}",
        *(QUICK if quick else []),
        *[o for o in overrides if not o.startswith("-")],
    ]
    full_env = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    full_env.pop("WANDB_SERVICE", None)  # its own W&B service, as a run started from a shell has
    proc = subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    return Run(proc, log_dir)


def printed_numbers(line: str) -> dict[str, float]:
    """The ``<label> <number>`` and ``<label>=<number>`` pairs of a line an entry prints last:
    ``test acc 0.9353, NLL 0.2100 (T=1.2000)`` → ``{"acc": 0.9353, "NLL": 0.21, "T": 1.2}``."""
    return {label: float(value) for label, value in re.findall(r"([A-Za-z]+)[ =]([-+]?\d+\.\d+)", line)}


@pytest.fixture(scope="session")
def one_epoch_run(tmp_path_factory) -> Run:
    run = train_cli(tmp_path_factory.mktemp("one_epoch"))
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    return run


def fashion_dm(**kwargs):
    """The Fashion-MNIST DataModule as the data config builds it (Debian's package, else a download),
    set up."""
    from recipelab.data import InMemoryDataModule
    from recipelab.data.fashion_mnist import load

    dm = InMemoryDataModule(dataset=load, **kwargs)
    dm.setup()
    return dm


def standardize(images: torch.Tensor) -> torch.Tensor:
    """uint8 Fashion-MNIST images → floats standardized with the dataset's published mean and std."""
    from recipelab.data.fashion_mnist import MEAN, STD

    return (images.float() / 255 - MEAN) / STD


@pytest.fixture(scope="session")
def fashion_train():
    from recipelab.data.fashion_mnist import load

    data = load()
    return data.train_images, data.train_labels


@pytest.fixture(autouse=True)
def _own_wandb_service():
    """A W&B run made in this process puts its service's address in os.environ (WANDB_SERVICE); the
    command lines the tests start would inherit it and share that service (a killed run's stream then
    stays registered there). Each test starts, and leaves, without it."""
    os.environ.pop("WANDB_SERVICE", None)
    yield
    os.environ.pop("WANDB_SERVICE", None)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
