"""What each of two gloo processes computes under DDP on CPU equals what one process holding the whole
batch computes.

Batch norm synchronized (``trainer.sync_batchnorm=true``): each process normalizes its share of a batch by
the whole batch's statistics, for the CNN's BatchNorm2d and the MLP's BatchNorm1d, down to one image a
process; its running statistics follow the one process's, with a momentum and with none (the cumulative
average SWA's batch-norm update sets). L-BFGS: with the gradients averaged as DDP averages them, each
process's steps are those of one process on the whole batch (its line search compares losses)."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from recipelab.run.distributed import GlobalBatchNorm
from recipelab.training.optim import lbfgs

pytestmark = pytest.mark.ddp

WORLD = 2
CASES = {  # the whole batch's shape (N first), batch norm's momentum
    "1d (N, C)": ((2, 5), 0.1),
    "1d (N, C, L)": ((4, 3, 7), 0.1),
    "2d": ((6, 3, 4, 4), 0.1),
    "2d, cumulative (SWA)": ((6, 3, 4, 4), None),
}


def _batches_and_norm(shape: tuple, momentum: float | None) -> tuple[torch.Tensor, nn.Module]:
    """Two batches and a batch norm, the same in every process."""
    torch.manual_seed(0)
    x = torch.randn(2, *shape) * 3 + 1
    norm = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1], momentum=momentum)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return x, norm


def _train(norm: nn.Module, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Two training passes, the second one's weighted sum backpropagated; returns ``second``'s gradient."""
    norm(first)
    second = second.clone().requires_grad_()
    (norm(second) * torch.arange(second.numel()).view(second.shape)).sum().backward()
    return second.grad


def _logistic_problem() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x = torch.randn(40, 6)
    return x, (x @ torch.randn(6) + 0.5 * torch.randn(40) > 0).float()


def _fit_lbfgs(x: torch.Tensor, y: torch.Tensor, averaged: bool) -> torch.Tensor:
    """Three L-BFGS steps (strong Wolfe line search) of logistic regression on (x, y); ``averaged``: the
    gradient averaged over the processes, as DDP's backward does."""
    w = torch.zeros(6, requires_grad=True)
    optimizer = lbfgs([w], lr=1.0, max_iter=10, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(x @ w, y) + 1e-3 * w.square().sum()
        loss.backward()
        if averaged:
            dist.all_reduce(w.grad)
            w.grad /= WORLD
        return loss

    for _ in range(3):
        optimizer.step(closure)
    return w.detach()


def _rank(rank: int, port: int, out: dict) -> None:
    dist.init_process_group(
        "gloo", f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=30)
    )
    try:
        for name, case in CASES.items():
            x, norm = _batches_and_norm(*case)
            GlobalBatchNorm().apply(norm)
            grad = _train(norm, *(batch.chunk(WORLD)[rank] for batch in x))
            out[name, rank] = (grad, norm.weight.grad, norm.running_mean, norm.running_var)
        x, y = _logistic_problem()
        out["lbfgs", rank] = _fit_lbfgs(x.chunk(WORLD)[rank], y.chunk(WORLD)[rank], averaged=True)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes() -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_rank, (port, out), nprocs=WORLD)
    return dict(out)


@pytest.mark.parametrize("name", CASES)
def test_each_process_normalizes_by_the_whole_batch(name, two_processes):
    x, norm = _batches_and_norm(*CASES[name])  # one process, the whole batch
    first, second = x
    # the weights each process gave its share of the output: arange over the share
    weights = torch.cat([torch.arange(s.numel()).view(s.shape) for s in second.chunk(WORLD)])
    norm(first)
    second = second.clone().requires_grad_()
    (norm(second) * weights).sum().backward()
    grads = second.grad.chunk(WORLD)
    for rank in range(WORLD):
        x_grad, _, mean, var = two_processes[name, rank]
        torch.testing.assert_close(x_grad, grads[rank], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(mean, norm.running_mean)
        torch.testing.assert_close(var, norm.running_var)
    # each process's weight gradient is its share's; DDP averages them, the sum is the whole batch's
    w_grads = [two_processes[name, rank][1] for rank in range(WORLD)]
    torch.testing.assert_close(sum(w_grads), norm.weight.grad, rtol=1e-4, atol=1e-5)


def test_lbfgs_steps_of_each_process_are_one_process_s_on_the_whole_batch(two_processes):
    """Each process's loss is its shard's: without the losses averaged too, the processes' line searches
    took different numbers of evaluations and waited on each other's gradients (a DDP run hung)."""
    whole = _fit_lbfgs(*_logistic_problem(), averaged=False)
    for rank in range(WORLD):
        torch.testing.assert_close(two_processes["lbfgs", rank], whole, rtol=1e-5, atol=1e-6)
    assert whole.norm() > 0.5  # it moved
