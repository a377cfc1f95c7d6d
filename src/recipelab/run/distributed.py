"""DDP inside a Hydra sweep: each job starts its own processes, and they train that job's config only.

Lightning starts the other ranks by re-running ``sys.argv``; under ``-m`` that is the whole sweep again
(Lightning issue 11300, its multirun support reverted in PR 15737), and its child-process observer kills
the main process, the sweep with it, when a child fails. ``JobDDPStrategy`` keeps Lightning's DDP and
replaces only the launch: rank 0 starts the other ranks as single runs of this job's own overrides, in
this job's folder, and a child that fails ends this job, not the sweep.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import subprocess
import sys
import threading
import time

import torch
import torch.distributed._functional_collectives as funcol
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from torch import nn

# what the launcher sets in this process's environment for its ranks; a sweep's next job must start without
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")
_children: list[subprocess.Popen] = []  # the ranks this process started for the current job


def rank_command(local_rank: int, ckpt_path) -> tuple[list[str], str]:
    """The command line of one more rank of the current Hydra job: a single run of the job's overrides."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    overrides = [o for o in hydra.overrides.task if not o.startswith("ckpt_path=")]
    command = [
        sys.executable,
        "-m",
        "recipelab.train",
        *overrides,
        "ckpt_path=null" if ckpt_path is None else f'ckpt_path="{ckpt_path}"',
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        "hydra.output_subdir=null",  # rank 0 already wrote .hydra/; the others must not overwrite it
        f"hydra.job.name={hydra.job.name}_rank{local_rank}",  # its own log file in the job's folder
    ]
    return command, hydra.runtime.cwd


def _watch(procs: list[subprocess.Popen]) -> None:
    """A rank that dies takes the job's other ranks down; rank 0 then fails in its next collective."""
    while procs:
        codes = [p.poll() for p in procs]
        if all(c == 0 for c in codes):
            return
        if any(c for c in codes):
            for p in procs:
                if p.poll() is None:
                    p.kill()
            return
        time.sleep(2)


class JobLauncher(_SubprocessScriptLauncher):
    """Lightning's script launcher with the ranks' command line of ``rank_command``."""

    def launch(self, function, *args, trainer=None, **kwargs):
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        if not self.cluster_environment.creates_processes_externally:  # SLURM starts every rank itself
            ckpt_path = inspect.signature(function).bind(*args, **kwargs).arguments.get("ckpt_path")
            self._start_ranks(ckpt_path)
            threading.Thread(target=_watch, args=(self.procs,), daemon=True).start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _start_ranks(self, ckpt_path) -> None:
        self._check_can_spawn_children()
        env = self.cluster_environment
        os.environ.update(
            MASTER_ADDR=env.main_address,
            MASTER_PORT=str(env.main_port),
            NODE_RANK=str(env.node_rank()),
            LOCAL_RANK="0",
            WORLD_SIZE=str(self.num_processes * self.num_nodes),
        )
        for local_rank in range(1, self.num_processes):
            command, cwd = rank_command(local_rank, ckpt_path)
            proc = subprocess.Popen(command, env={**os.environ, "LOCAL_RANK": str(local_rank)}, cwd=cwd)
            self.procs.append(proc)
            _children.append(proc)


class _GlobalStats:
    """A batch norm whose training statistics are the global batch's: the ranks sum their per-channel sums.

    Hand-written because torch.nn.SyncBatchNorm refuses CPU tensors (and so gloo). The backward pass's
    gradient flows back through the other ranks' statistics too, as it does in SyncBatchNorm. As there, a
    process may hold one image of a batch: only the global batch needs two.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.distributed.is_initialized()):
            return super().forward(x)
        c, xf = x.shape[1], x.float()
        dims = (0, *range(2, x.dim()))  # every axis but the channels': (N, C), (N, C, L), (N, C, H, W)
        count = torch.full((1,), x.numel() // c, dtype=xf.dtype, device=x.device)
        local = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])
        world = torch.distributed.get_world_size()
        # gathered, then summed: the gather's backward (a reduce-scatter) sends each rank its gradient share
        stats = (
            funcol.all_gather_single_autograd(local, 0, torch.distributed.group.WORLD).view(world, -1).sum(0)
        )
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c : 2 * c] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                # momentum None: the cumulative average (SWA's batch-norm update sets it), as BatchNorm does
                weight = 1 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean, weight)
                self.running_var.lerp_(var * n / (n - 1), weight)  # the unbiased variance, as BN keeps
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


class GlobalBatchNorm1d(_GlobalStats, nn.BatchNorm1d):
    """BatchNorm1d (the MLP's) over the global batch."""


class GlobalBatchNorm2d(_GlobalStats, nn.BatchNorm2d):
    """BatchNorm2d over the global batch."""


GLOBAL = {nn.BatchNorm1d: GlobalBatchNorm1d, nn.BatchNorm2d: GlobalBatchNorm2d}


class GlobalBatchNorm(TorchSyncBatchNorm):
    """``sync_batchnorm`` on CPU: every BatchNorm1d and BatchNorm2d becomes its global twin (same
    parameters), as SyncBatchNorm replaces every batch norm on a GPU."""

    def apply(self, model: nn.Module) -> nn.Module:
        for m in model.modules():
            if type(m) in GLOBAL:
                m.__class__ = GLOBAL[type(m)]  # only forward differs: parameters and buffers stay in place
        return model

    def revert(self, model: nn.Module) -> nn.Module:
        local = {v: k for k, v in GLOBAL.items()}
        for m in model.modules():
            if type(m) in local:
                m.__class__ = local[type(m)]
        return model


class JobDDPStrategy(DDPStrategy):
    """Lightning's DDP (``popen`` start), launched per Hydra job by ``JobLauncher``."""

    def _configure_launcher(self) -> None:
        self._launcher = JobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)

    def setup(self, trainer) -> None:
        if self.root_device.type == "cpu" and type(self._layer_sync) is TorchSyncBatchNorm:
            self._layer_sync = GlobalBatchNorm()
        super().setup(trainer)


@contextlib.contextmanager
def job_scope():
    """Whatever a DDP job set up in this process ends with it, so a sweep's next job starts clean:
    its ranks (waited for, killed if the job failed), the process group, the environment, the threads."""
    saved_env = {k: os.environ.get(k) for k in DDP_ENV}
    threads = torch.get_num_threads()
    failed = True
    try:
        yield
        failed = False
    finally:
        for proc in _children:
            try:
                proc.wait(timeout=0 if failed else 120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _children.clear()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)
