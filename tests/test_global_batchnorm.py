"""Batch norm synchronized on CPU (``trainer.sync_batchnorm=true`` under gloo): each process normalizes its
share of a batch by the whole batch's statistics, as one process holding the whole batch does, for the
CNN's BatchNorm2d and the MLP's BatchNorm1d, down to one image a process."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from recipelab.run.distributed import GlobalBatchNorm

pytestmark = pytest.mark.ddp

SHAPES = {"1d (N, C)": (2, 5), "1d (N, C, L)": (4, 3, 7), "2d": (6, 3, 4, 4)}  # N: the whole batch


def _rank(rank: int, world: int, port: int, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        for name, shape in SHAPES.items():
            torch.manual_seed(0)  # the same batch and parameters in every process
            x = torch.randn(shape) * 3 + 1
            norm = _norm(shape)
            GlobalBatchNorm().apply(norm)
            share = x.chunk(world)[rank].clone().requires_grad_()
            (norm(share) * torch.arange(share.numel()).view(share.shape)).sum().backward()
            out[name, rank] = (share.grad, norm.weight.grad, norm.running_mean, norm.running_var)
    finally:
        dist.destroy_process_group()


def _norm(shape: tuple) -> nn.Module:
    norm = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1])
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return norm


WORLD = 2


@pytest.fixture(scope="module")
def two_processes() -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_rank, (WORLD, port, out), nprocs=WORLD)
    return dict(out)


@pytest.mark.parametrize("name", SHAPES)
def test_each_process_normalizes_by_the_whole_batch(name, two_processes):
    shape, world = SHAPES[name], WORLD
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3 + 1).requires_grad_()
    norm = _norm(shape)  # one process, the whole batch
    weights = torch.cat([torch.arange(p.numel()).view(p.shape) for p in x.detach().chunk(world)])
    (norm(x) * weights).sum().backward()
    grads = x.grad.chunk(world)
    for rank in range(world):
        x_grad, _, mean, var = two_processes[name, rank]
        torch.testing.assert_close(x_grad, grads[rank], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(mean, norm.running_mean)
        torch.testing.assert_close(var, norm.running_var)
    # each process's weight gradient is its share's; DDP averages them, the sum is the whole batch's
    w_grads = [two_processes[name, rank][1] for rank in range(world)]
    torch.testing.assert_close(sum(w_grads), norm.weight.grad, rtol=1e-4, atol=1e-5)
