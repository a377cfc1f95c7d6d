"""DDP inside a sweep on CPU (2 gloo processes per job): each job's ranks train that job only, in its folder;
the global batch is split across the ranks; the first step's averaged gradient is the one-process gradient."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recipelab.build import build_module
from recipelab.data import EpochPermutation
from recipelab.records.wandb_file import read_run
from tests.conftest import train_cli

pytestmark = pytest.mark.ddp

TRAIN, BATCH = 400, 100


@pytest.fixture(scope="module")
def ddp_sweep(tmp_path_factory):
    run = train_cli(
        tmp_path_factory.mktemp("ddp"),
        "-m",
        "trainer=ddp_cpu",
        "trainer.precision=32-true",  # the gradient comparison wants fp32
        "augmentation=none",  # per-rank random augmentation would differ from one process's
        "tta_flip=false",
        f"data.train_size={TRAIN}",
        f"data.batch_size={BATCH}",
        "data.val_size=200",
        "seed=1,2",
        "+callbacks.grads._target_=tests.helpers.FirstStepGradients",
        "+callbacks.grads.path=${paths.output_dir}/first_step.pt",
        timeout=600,
    )
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    return run


def test_ddp_sweep_makes_one_folder_record_and_wandb_run_per_job(ddp_sweep):
    dirs = ddp_sweep.run_dirs
    assert [d.name for d in dirs] == ["0", "1"]  # the ranks started no sweep and no run of their own
    assert [p.name for p in ddp_sweep.log_dir.iterdir()] == ["multiruns"]
    assert len(list(ddp_sweep.log_dir.rglob("metrics.json"))) == 2
    runs = [read_run(p) for p in sorted(ddp_sweep.log_dir.rglob("run-*.wandb"))]
    assert len(runs) == 2 and len({r.group for r in runs}) == 1
    for d, seed in zip(dirs, (1, 2), strict=True):
        m = ddp_sweep.metrics(d)
        assert m["status"] == "completed" and m["seed"] == seed and m["groups"]["trainer"] == "ddp_cpu"
        assert m["steps"] == TRAIN // BATCH  # data.batch_size is the global batch: 2 ranks x 50
        assert (d / "train_rank1.log").is_file()  # rank 1 ran in this job's folder


def test_first_step_gradient_equals_the_single_process_gradient(ddp_sweep):
    job = ddp_sweep.run_dirs[0]
    saved = torch.load(job / "first_step.pt", weights_only=True)
    assert saved["local_batch"] == BATCH // 2
    state = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
    cfg = OmegaConf.create(state["hyper_parameters"]["config"])
    cfg.channels_last = False  # torch's CPU batch norm is less exact on channels-last input (5e-4 off)
    module = build_module(cfg)
    module.load_state_dict(saved["weights"])
    module.train()

    # one process, the same global batch: the first BATCH samples of epoch 0's permutation
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    images, labels = datamodule.splits["train"]
    order = EpochPermutation(TRAIN, shuffle=True, seed=cfg.seed).indices()[:BATCH]
    x, y = datamodule.prepare(images[order]), labels[order]
    loss = module.model_step((x, y), module.regularizer.label_smoothing)[0]
    loss.backward()

    # float tolerance; without synchronized batch norm the error is 15-30% in the first layers
    for name, p in module.named_parameters():
        error = (saved["grads"][name] - p.grad).norm() / p.grad.norm()
        assert error < 1e-3, f"{name}: relative error {error:.2e}"


def test_sharded_evaluation_equals_one_process_evaluation(ddp_sweep, tmp_path):
    """Each rank evaluated half of the test and validation sets; the synced metrics are those of one
    process evaluating the whole split (recipelab.evaluate, on the same checkpoint)."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    job = ddp_sweep.run_dirs[0]
    record = ddp_sweep.metrics(job)
    # the test's own callback is not a class of the project: evaluate refuses its stored config as it is
    ckpt = torch.load(record["best_checkpoint"], weights_only=True)
    del ckpt["hyper_parameters"]["config"]["callbacks"]["grads"]
    copy = tmp_path / "best.ckpt"
    torch.save(ckpt, copy)
    for split in ("test", "val"):
        args = [f"ckpt_path={copy}", f"split={split}", "log_wandb=false"]
        proc = subprocess.run(
            [sys.executable, "-m", "recipelab.evaluate", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        one = json.loads((tmp_path / "evaluate.json").read_text())["metrics"]
        assert record["metrics"][f"{split}/acc"] == pytest.approx(one[f"{split}/acc"], abs=1e-6)
        loss = "test/nll" if split == "test" else "val/loss"
        assert record["metrics"][loss] == pytest.approx(one[f"{split}/nll"], rel=1e-4)


def test_a_rank_that_diverges_ends_its_job_on_every_rank(tmp_path):
    import time

    start = time.time()
    run = train_cli(
        tmp_path, "-m", "trainer=ddp_cpu", f"data.train_size={TRAIN}", f"data.batch_size={BATCH}",
        "data.val_size=200", "seed=1,2", "logger=csv",
        "+callbacks.nan._target_=tests.helpers.DivergeOnRank", "+callbacks.nan.rank=1",
        "+callbacks.nan.run_seed=${seed}", "+callbacks.nan.at_seed=1",
        timeout=300,
    )  # fmt: skip
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    statuses = [run.metrics(d)["status"] for d in run.run_dirs]
    assert statuses == ["diverged", "completed"]
    assert run.metrics(run.run_dirs[0])["diverged"]["step"] == 0
    assert time.time() - start < 120  # two DDP jobs; the diverged one ended at once, not after a timeout
