"""DDP inside a sweep on CPU (2 gloo processes per job): each job's ranks train that job only, in its folder;
the global batch is split across the ranks; the first step's averaged gradient is the one-process gradient;
the epoch's training loss and accuracy count every rank's samples."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recipelab.build import build_module
from recipelab.data import EpochPermutation, InMemoryDataModule
from recipelab.data.memory import TensorBatchLoader
from recipelab.records.wandb_file import read_run
from tests.conftest import ROOT, train_cli

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
    job = ddp_sweep.run_dirs[0]
    record = ddp_sweep.metrics(job)
    # the test's own callback is not a class of the project: evaluate refuses its stored config as it is
    ckpt = torch.load(record["best_checkpoint"], weights_only=True)
    del ckpt["hyper_parameters"]["config"]["callbacks"]["grads"]
    copy = tmp_path / "best.ckpt"
    torch.save(ckpt, copy)
    for split in ("test", "val"):
        args = [f"ckpt_path={copy}", f"split={split}", "log_wandb=false"]
        cmd = [sys.executable, "-m", "recipelab.evaluate", *args]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        one = json.loads((tmp_path / "evaluate.json").read_text())["metrics"]
        assert record["metrics"][f"{split}/acc"] == pytest.approx(one[f"{split}/acc"], abs=1e-6)
        loss = "test/nll" if split == "test" else "val/loss"
        assert record["metrics"][loss] == pytest.approx(one[f"{split}/nll"], rel=1e-4)


def test_a_rank_that_diverges_ends_its_job_on_every_rank(tmp_path):
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


class _FirstOfEachBatch(TensorBatchLoader):
    keep = 0

    def __iter__(self):
        for batch in super().__iter__():
            yield tuple(t[: self.keep] for t in batch)


class FewerOnRank1(InMemoryDataModule):
    """Rank 1 trains on the first ``keep`` samples of each of its batches: the ranks take the same number
    of steps, rank 1 on fewer samples (and other ones) than rank 0."""

    def __init__(self, keep: int, **kwargs):
        super().__init__(**kwargs)
        self.keep = keep

    def train_dataloader(self):
        loader = super().train_dataloader()
        if self.trainer.global_rank == 1:
            loader.__class__, loader.keep = _FirstOfEachBatch, self.keep
        return loader


def test_the_epoch_training_metrics_count_every_rank_s_samples(tmp_path):
    """The DDP version of tests/training/test_step_costs.py's check: with an lr too small to move a weight
    (no normalization, no augmentation, fp32), the logged epoch loss (the mean of every rank's batch
    losses) and accuracy (over every rank's samples) are those of the unchanged network, recomputed in
    one process on the batches each rank trained on: 4 of 50 images on rank 0, 4 of 20 on rank 1."""
    keep = 20
    run = train_cli(
        tmp_path, "trainer=ddp_cpu", "trainer.precision=32-true", "model=mlp", "model.hidden=[16]",
        "normalization=none", "augmentation=none", "optimizer.lr=1e-30", "scheduler=none", "logger=csv",
        f"data._target_={__name__}.FewerOnRank1", f"+data.keep={keep}", f"data.train_size={TRAIN}",
        f"data.batch_size={BATCH}", "data.val_size=200", "trainer.limit_test_batches=1",
        "+callbacks.grads._target_=tests.helpers.FirstStepGradients",
        "+callbacks.grads.path=${paths.output_dir}/first_step.pt",
        timeout=600,
    )  # fmt: skip
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    state = torch.load(run.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    before = torch.load(run.run_dir / "first_step.pt", weights_only=True)["weights"]
    assert all(torch.equal(before[k], v) for k, v in state["state_dict"].items())  # the network never moved
    cfg = OmegaConf.create(state["hyper_parameters"]["config"])
    module = build_module(cfg)
    module.load_state_dict(state["state_dict"])
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    images, labels = datamodule.splits["train"]
    order, per_rank = EpochPermutation(TRAIN, shuffle=True, seed=cfg.seed).indices(), BATCH // 2
    losses, correct, seen = {0: [], 1: []}, {0: 0, 1: 0}, {0: 0, 1: 0}
    with torch.no_grad():
        for rank in (0, 1):
            shard = order[rank::2]  # every 2nd sample of the epoch's order
            for b in range(len(shard) // per_rank):
                idx = shard[b * per_rank : (b + 1) * per_rank][: keep if rank else None]
                loss, logits, y = module.model_step(
                    (datamodule.prepare(images[idx]), labels[idx]), cfg.regularization.label_smoothing
                )
                losses[rank].append(float(loss))
                correct[rank] += int((logits.argmax(-1) == y).sum())
                seen[rank] += len(y)
    assert seen == {0: TRAIN // 2, 1: TRAIN // 2 // per_rank * keep}
    loss = sum(losses[0] + losses[1]) / len(losses[0] + losses[1])
    acc = (correct[0] + correct[1]) / (seen[0] + seen[1])
    with (run.run_dir / "csv" / "metrics.csv").open() as f:
        (logged,) = [r for r in csv.DictReader(f) if r.get("train/acc")]
    assert float(logged["train/loss_epoch"]) == pytest.approx(loss, rel=1e-5)
    assert float(logged["train/acc"]) == pytest.approx(acc, abs=1e-6)
    # the ranks' shares differ, so a reduce that forgot a rank, or averaged the ranks' values, would show
    assert abs(sum(losses[0]) / len(losses[0]) - loss) > 1e-4
    assert abs((correct[0] / seen[0] + correct[1] / seen[1]) / 2 - acc) > 1e-4
