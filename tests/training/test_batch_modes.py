"""Mini-batch modes: full batch, n = 1, any size; the batch gradient is the mean; gradient accumulation."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
import yaml
from hydra.utils import instantiate
from torch import nn

from recipelab.build import build_datamodule, build_module, build_param_groups
from recipelab.data import TensorBatchLoader
from recipelab.training import RecipeModule
from tests.conftest import train_cli
from tests.training.composed import compose_train

F64 = torch.float64
X = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
Y = torch.arange(8) % 3


@pytest.mark.parametrize(
    ("optimizer", "batch_size", "per_epoch"),
    [("nesterov", "full", 1), ("nesterov", 1, 12), ("nesterov", 5, 3), ("lbfgs", "full", 1)],
)
def test_batch_modes_take_the_expected_steps_per_epoch(optimizer, batch_size, per_epoch, caplog):
    """N = 12 training samples through the real DataModule, 2 epochs, a tiny channels-last CNN (whose
    conv gradients LBFGS must flatten)."""
    cfg = compose_train(
        f"optimizer={optimizer}", f"data.batch_size={batch_size}", "data.train_size=12", "model.widths=[2]",
        "model.depth=2", "trainer.max_epochs=2",
    )  # fmt: skip
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.batch_size)
    trainer = L.Trainer(max_epochs=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="recipelab"):
        trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 2 * per_epoch
    assert f"iterations per epoch: {per_epoch} batches, {per_epoch} optimizer steps" in caplog.text


@pytest.mark.slow
def test_full_batch_and_n1_through_the_command_line(tmp_path):
    """N = 40 training samples, 2 epochs: `full` takes 1 step per epoch, n = 1 takes 40; LBFGS in both."""
    run = train_cli(
        tmp_path, "-m", "data.batch_size=full,1", "optimizer=nesterov,lbfgs", "trainer=quiet", "logger=csv",
        "trainer.max_epochs=2", "data.train_size=40", "data.val_size=100", quick=False, timeout=900,
    )  # fmt: skip
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    seen = set()
    for run_dir in run.run_dirs:
        m = run.metrics(run_dir)
        cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        per_epoch = 1 if cfg["data"]["batch_size"] == "full" else 40
        assert m["status"] == "completed" and m["epochs"] == 2 and m["steps"] == 2 * per_epoch, run_dir
        logged = yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text())
        assert logged["iterations_per_epoch"] == per_epoch
        seen.add((cfg["data"]["batch_size"], m["groups"]["optimizer"]))
    assert seen == {("full", "nesterov"), ("full", "lbfgs"), (1, "nesterov"), (1, "lbfgs")}


def test_batch_gradient_is_the_mean_of_the_per_sample_gradients():
    torch.manual_seed(0)
    module = RecipeModule(model=nn.Linear(5, 3, dtype=F64), optimizer=None, num_classes=3)

    def grad(x, y):
        module.zero_grad()
        module.model_step((x, y))[0].backward()
        return torch.cat([p.grad.flatten() for p in module.parameters()])

    per_sample = torch.stack([grad(X[i : i + 1], Y[i : i + 1]) for i in range(len(Y))])
    torch.testing.assert_close(grad(X, Y), per_sample.mean(0), atol=1e-12, rtol=0)


def one_epoch(batch_size: int, accumulate: int) -> list[torch.Tensor]:
    cfg = compose_train("optimizer=sgd", "optimizer.lr=0.5")
    torch.manual_seed(0)
    model = nn.Linear(5, 3, dtype=F64)
    module = RecipeModule(
        model=model, optimizer=instantiate(cfg.optimizer), param_groups=build_param_groups(cfg), num_classes=3
    )
    trainer = L.Trainer(
        max_epochs=1,
        accumulate_grad_batches=accumulate,
        precision="64-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=TensorBatchLoader(X, Y, batch_size=batch_size))
    assert trainer.global_step == len(Y) // (batch_size * accumulate)
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize(("batch_size", "accumulate"), [(4, 2), (1, 8)])
def test_gradient_accumulation_equals_the_larger_batch(batch_size, accumulate):
    for got, want in zip(one_epoch(batch_size, accumulate), one_epoch(8, 1), strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("batch_size", "steps"), [("full", 1), ("1", 30)])
def test_full_batch_and_n1_are_taken_from_the_command_line(tmp_path, batch_size, steps):
    run = train_cli(
        tmp_path, f"data.batch_size={batch_size}", "data.train_size=30", "data.val_size=100",
        "trainer.max_epochs=1", "trainer=quiet", "logger=csv", quick=False,
    )  # fmt: skip
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    assert run.metrics()["status"] == "completed" and run.metrics()["steps"] == steps
