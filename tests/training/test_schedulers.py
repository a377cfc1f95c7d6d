"""Every scheduler option, composed from conf/ and run through Lightning, against its lr formula."""

from __future__ import annotations

import functools
import math

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from recipelab.build import build_module, build_param_groups
from recipelab.data import TensorBatchLoader
from recipelab.training import RecipeModule
from tests.training.composed import bare_trainer, compose_train

EPOCHS, BATCH, N = 4, 4, 12  # 3 optimizer steps per epoch, 12 in all
SPE, T = N // BATCH, EPOCHS * N // BATCH


class LrTrace(L.Callback):
    """The rate each optimizer step uses, and the monitored val/loss after each epoch."""

    def __init__(self):
        self.lrs, self.val_losses = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_validation_epoch_end(self, trainer, pl_module):
        self.val_losses.append(trainer.callback_metrics["val/loss"].item())


def fit(module, x, y, epochs, val=False, **options) -> LrTrace:
    trace = LrTrace()
    trainer = bare_trainer(max_epochs=epochs, callbacks=[trace], num_sanity_val_steps=0, **options)
    loader = TensorBatchLoader(x, y, batch_size=BATCH, shuffle=True)
    trainer.fit(
        module, train_dataloaders=loader, val_dataloaders=TensorBatchLoader(x, y, len(y)) if val else None
    )
    return trace


@functools.cache  # a run shared by the tests that ask for the same recipe
def lr_curve(*overrides, **options):
    cfg = compose_train("trainer.max_epochs=4", "model.widths=[2]", "model.depth=1", *overrides)  # a tiny CNN
    x = torch.randn(N, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.arange(N) % 10
    return cfg, tuple(fit(build_module(cfg), x, y, EPOCHS, **options).lrs)


def cos_anneal(start, end, pct):
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def one_cycle(lr, t, pct_start=0.25, div=25.0, final_div=1e4, total=T):  # OneCycleLR's two cosine phases
    peak_step = pct_start * total - 1
    if t <= peak_step:
        return cos_anneal(lr / div, lr, t / peak_step)
    return cos_anneal(lr, lr / div / final_div, (t - peak_step) / (total - 1 - peak_step))


def warmup_cosine(lr, t, warmup=SPE, start=0.1, eta=0.001):
    if t < warmup:
        return lr * (start + (1 - start) * t / warmup)
    return eta + (lr - eta) * (1 + math.cos(math.pi * (t - warmup) / (T - warmup))) / 2


CASES = {
    "none": ([], lambda lr, t: lr),
    "step": (
        ["scheduler.build.step_epochs=1", "scheduler.build.gamma=0.5"],
        lambda lr, t: lr * 0.5 ** (t // SPE),
    ),
    "multistep": (
        ["scheduler.build.milestone_epochs=[1,3]", "scheduler.build.gamma=0.5"],
        lambda lr, t: lr * 0.5 ** sum(t >= m * SPE for m in (1, 3)),
    ),
    "cosine": (
        ["scheduler.build.eta_min=0.001"],
        lambda lr, t: 0.001 + (lr - 0.001) * (1 + math.cos(math.pi * t / T)) / 2,
    ),
    "warmup_cosine": (["scheduler.build.start_factor=0.1", "scheduler.build.eta_min=0.001"], warmup_cosine),
    "onecycle": ([], one_cycle),
    "cosine_restarts": (
        ["scheduler.build.eta_min=0.001"],  # cycle_epochs: 2 from the option's YAML
        lambda lr, t: 0.001 + (lr - 0.001) * (1 + math.cos(math.pi * (t % (2 * SPE)) / (2 * SPE))) / 2,
    ),
}


@pytest.mark.parametrize("option", CASES)
def test_scheduler_follows_its_formula_per_step(option):
    overrides, formula = CASES[option]
    cfg, lrs = lr_curve(f"scheduler={option}", *overrides)
    want = [formula(cfg.optimizer.lr, t) for t in range(T)]
    assert list(lrs) == pytest.approx(want, rel=1e-9, abs=1e-12)


STOP = 7  # trainer.max_steps: the fit ends in its third epoch, before max_epochs' T = 12 steps
ENDED_BY_STEPS = {
    "cosine": lambda lr, t: cos_anneal(lr, 0.0, t / STOP),
    "onecycle": lambda lr, t: one_cycle(lr, t, total=STOP),
}


@pytest.mark.parametrize("option", ENDED_BY_STEPS)
def test_a_fit_ended_by_max_steps_runs_its_schedule_over_those_steps(option):
    """The schedule spans the fit's STOP steps (before, it was built for (STOP // EPOCHS) · EPOCHS = 4
    steps, and OneCycleLR raised at the 5th)."""
    cfg, lrs = lr_curve(f"scheduler={option}", max_steps=STOP)
    want = [ENDED_BY_STEPS[option](cfg.optimizer.lr, t) for t in range(STOP)]
    assert list(lrs) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_cosine_stepped_per_epoch_holds_the_rate_within_an_epoch():
    cfg, lrs = lr_curve("scheduler=cosine", "scheduler.interval=epoch")
    lr = cfg.optimizer.lr
    want = [lr * (1 + math.cos(math.pi * (t // SPE) / EPOCHS)) / 2 for t in range(T)]
    assert list(lrs) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_cosine_restarts_lowest_rate_is_the_last_step_of_each_cycle():
    """The checkpoint-ensemble contract: with cycle_epochs=c, the end of every c-th epoch is a cycle's minimum
    and the next epoch starts again from the peak."""
    cfg, lrs = lr_curve("scheduler=cosine_restarts", *CASES["cosine_restarts"][0])  # cycle_epochs: 2
    cycle = 2 * SPE
    for start in range(0, T, cycle):
        within = lrs[start : start + cycle]
        assert min(within) == within[-1] < within[0] == cfg.optimizer.lr


def plateau_rule(lr, losses, factor, patience, threshold):
    """ReduceLROnPlateau (mode min, relative threshold): the rate each epoch trains with."""
    best, bad, rates = math.inf, 0, []
    for loss in losses:
        rates.append(lr)
        if loss < best * (1 - threshold):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = lr * factor, 0
    return rates


@pytest.mark.parametrize("stall", [True, False])
def test_plateau_lowers_the_rate_when_val_loss_stalls(stall):
    """All-zero inputs to a bias-free linear model give zero gradients, so val/loss stalls exactly;
    random inputs let it keep falling. Both follow the plateau rule; only the stall lowers the rate."""
    cfg = compose_train(
        "scheduler=plateau", "scheduler.build.patience=1", "scheduler.build.factor=0.5", "optimizer.lr=0.01"
    )
    epochs = 6
    x = torch.zeros(N, 5) if stall else torch.randn(N, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(N) % 3
    options = {k: cfg.scheduler[k] for k in ("interval", "frequency", "monitor")}
    module = RecipeModule(
        model=nn.Linear(5, 3, bias=False),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler.build),
        scheduler_options=options,
        param_groups=build_param_groups(cfg),
        num_classes=3,
    )
    trace = fit(module, x, y, epochs, val=True)
    b = cfg.scheduler.build
    rates = plateau_rule(cfg.optimizer.lr, trace.val_losses, b.factor, b.patience, b.threshold)
    assert trace.lrs[::SPE] == pytest.approx(rates, rel=1e-12)
    assert (min(rates) < cfg.optimizer.lr) == stall
