"""Checks that need CUDA (skipped without it); scripts/gpu_check.sh runs them on a GPU machine."""

import pytest
import torch

from recipelab.data import build_augmentation, prepare_batch

STATS = (torch.tensor(0.286).view(1, 1, 1, 1), torch.tensor(0.353).view(1, 1, 1, 1))

pytestmark = pytest.mark.gpu


def test_augmentation_on_gpu_matches_cpu():
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    ops = [{"op": "flip", "p": 0.5}, {"op": "crop", "p": 1.0, "padding": 2}]
    cpu = prepare_batch(images, *STATS, build_augmentation(ops, seed=3))
    gpu = prepare_batch(images.cuda(), *(s.cuda() for s in STATS), build_augmentation(ops, seed=3))
    # same flips and crops; the normalization's float rounding may differ between the devices
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)


def test_gpu_run_trains_with_data_resident_on_device(tmp_path):
    from tests.conftest import train_cli

    run = train_cli(tmp_path, "trainer=gpu", "logger=csv", "trainer.enable_progress_bar=false")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    m = run.metrics()
    assert m["status"] == "completed" and m["metrics"]["test/acc"] > 0.3
