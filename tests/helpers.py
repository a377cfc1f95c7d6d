"""Callbacks that tests add to real runs from the command line (``+callbacks.x._target_=tests.helpers.X``)."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch


class DivergeAtSeed(L.Callback):
    """Makes the run whose seed is ``diverge_seed`` diverge: its weights turn NaN before the first step."""

    def __init__(self, run_seed: int, diverge_seed: int):
        self.diverge = run_seed == diverge_seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.diverge and trainer.global_step == 0:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(math.nan)


class NanAtStep(L.Callback):
    """The run whose seed is ``at_seed`` gets NaN weights as optimizer step ``step`` begins; in a fused chunk
    of consecutive seeds from ``run_seed`` (``seeds_per_process``), that seed's copy alone."""

    fusable = True

    def __init__(self, step: int, run_seed: int, at_seed: int):
        self.step, self.index = step, at_seed - run_seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step != self.step:
            return
        stack = getattr(pl_module.model, "param_names", None)  # a fused chunk's SeedStack
        with torch.no_grad():
            if stack is not None and 0 <= self.index < pl_module.model.k:
                for name in stack:
                    pl_module.model.stacked(name)[self.index].fill_(math.nan)
            elif stack is None and self.index == 0:
                for p in pl_module.parameters():
                    p.fill_(math.nan)


class FirstStepGradients(L.Callback):
    """Saves, on rank 0, the weights before and the (all-reduced) gradients of the first optimizer step."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            self.local_batch = len(batch[0])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == 0 and trainer.global_rank == 0:
            grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters()}
            torch.save({"weights": self.weights, "grads": grads, "local_batch": self.local_batch}, self.path)


class SignalAtStep(L.Callback):
    """Sends this process ``signal`` (a name: SIGINT, SIGTERM) as the given optimizer step begins, as a
    scheduler or a user at the keyboard would; with ``at_seed``, only in the run whose seed it is."""

    fusable = True  # in a fused chunk (seeds_per_process) it signals the chunk's process, as it would a run's

    def __init__(self, step: int, signal: str, run_seed: int | None = None, at_seed: int | None = None):
        import signal as signals

        self.step, self.signum = step, getattr(signals, signal)
        self.active = at_seed is None or run_seed == at_seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        import os

        if self.active and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class RaiseAtSeed(L.Callback):
    """A bug in the run whose seed is ``at_seed``: an exception at its first step."""

    def __init__(self, run_seed: int, at_seed: int):
        self.fail = run_seed == at_seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.fail:
            raise RuntimeError("a bug in this job")


class DivergeOnRank(L.Callback):
    """In the run whose seed is ``at_seed``, DDP rank ``rank`` alone gets NaN weights before its first
    step: its loss is NaN while the other ranks' are finite."""

    def __init__(self, rank: int, run_seed: int, at_seed: int):
        self.rank, self.active = rank, run_seed == at_seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.active and trainer.global_rank == self.rank and trainer.global_step == 0:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(math.nan)
