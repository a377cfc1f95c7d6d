"""k copies of one network side by side in one process: seeds as a batch axis.

Each copy's parameters and buffers are slices of tensors stacked on a leading axis of size k
(``torch.func.stack_module_state``), so that one optimizer steps every copy at once with elementwise
updates, and a copy's gradient comes from its own loss only (the copies share no tensor). The forward
takes one batch per copy, ``[k, N, ...]``, and runs the network once per copy through
``torch.func.functional_call`` on its slices: batch norm updates the copy's own running statistics,
dropout and DropConnect draw the copy's own masks.

Two ways to run the copies, the same values up to float reassociation:
- ``vectorize=False``: a loop over the copies. On a CPU this is the fast one: measured on the 2-core
  machine (default CNN, batch 256, k = 3, one thread, other work running), ``vmap``'s batched
  convolutions, which are grouped convolutions, took 1.9x the time of three separate ones.
- ``vectorize=True``: ``torch.func.vmap`` (``randomness="different"``: each copy its own masks), one kernel
  for all k copies, which keeps a small network's GPU busy.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


def _input_in_stats_dtype(module: nn.Module, args: tuple):
    """Batch norm's input cast to its running statistics' dtype, under ``vmap`` only: there, with bf16
    autocast on CUDA, batch norm's batched backward refuses a bf16 input beside float32 statistics (seen
    on an H200, torch 2.11: "Expected running_mean to have type BFloat16 but got Float"); the loop and a
    separate run hand bf16 to cuDNN, which takes both. A no-op in float32."""
    stats = module.running_mean if module.running_mean is not None else module.weight
    if stats is None or args[0].dtype == stats.dtype:
        return None
    return (args[0].to(stats.dtype), *args[1:])


def _key(name: str) -> str:
    """A stacked tensor's attribute name: module paths hold dots, attribute names cannot."""
    return name.replace(".", "__")


class SeedStack(nn.Module):
    """``copies`` (same architecture, each initialized by its own seed) as one module of k copies."""

    def __init__(
        self,
        copies: Sequence[nn.Module],
        vectorize: bool = False,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        super().__init__()
        if len({type(c) for c in copies}) != 1:
            raise ValueError("SeedStack: the copies must be one network class")
        params, buffers = stack_module_state(list(copies))
        # the network's structure without its state: a list, so that it is not a submodule of this one
        self._skeleton = [copy.deepcopy(copies[0]).to("meta")]
        if vectorize:
            # under vmap the copies keep the default layout: on CUDA batch norm asks whether its batched
            # input is channels_last-contiguous, which vmap does not implement (H200, torch 2.11: "NYI:
            # querying is_contiguous inside of vmap for memory_format other than torch.contiguous_format")
            memory_format = torch.contiguous_format
            for module in self._skeleton[0].modules():
                if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
                    module.register_forward_pre_hook(_input_in_stats_dtype)
        self.k, self.vectorize = len(copies), vectorize
        self.memory_format = memory_format  # each copy's batch, as a separate run lays out its own
        self.param_names, self.buffer_names = list(params), list(buffers)
        self.state_names = list(copies[0].state_dict())  # persistent buffers only, as a checkpoint holds
        for name, p in params.items():
            self.register_parameter(_key(name), nn.Parameter(self._laid_out(p.detach())))
        for name, b in buffers.items():
            self.register_buffer(_key(name), b.clone())

    def _laid_out(self, stacked: torch.Tensor) -> torch.Tensor:
        """A copy of ``stacked`` in which each copy's slice has its separate network's layout: with
        channels_last, a convolution's [out, in, kh, kw] kernel is stored as [out, kh, kw, in] (as
        ``module.to(memory_format=torch.channels_last)`` stores it), so the copy runs the same kernels."""
        if self.memory_format != torch.channels_last or stacked.ndim != 5:
            return stacked.clone()
        one = torch.empty_like(stacked[0], memory_format=torch.channels_last)  # its strides, even where in=1
        strides = (one.numel(), *one.stride())
        return torch.empty_strided(stacked.shape, strides, dtype=stacked.dtype, device=stacked.device).copy_(
            stacked
        )

    def _state(self, copy_index: int | None = None) -> tuple[dict, dict]:
        pick = (lambda t: t) if copy_index is None else (lambda t: t[copy_index])
        params = {n: pick(getattr(self, _key(n))) for n in self.param_names}
        buffers = {n: pick(getattr(self, _key(n))) for n in self.buffer_names}
        return params, buffers

    def _one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._skeleton[0], (params, buffers), (x,))

    def forward(self, x: torch.Tensor, idle: frozenset[int] = frozenset()) -> torch.Tensor:
        """``x``: one batch per copy, ``[k, N, ...]`` → ``[k, N, ...]`` outputs. ``idle``: copies whose output
        is not used (diverged, stopped): in the loop they are not run and give zeros (under vmap every
        copy runs)."""
        if x.shape[0] != self.k:
            raise ValueError(f"SeedStack: {x.shape[0]} batches for {self.k} copies")
        skeleton = self._skeleton[0]
        if skeleton.training != self.training:
            # the mode is read here, not passed on by train(): Lightning puts modes back after validation
            # by setting each submodule's ``training`` flag, and the skeleton is not a submodule
            skeleton.train(self.training)
        if self.vectorize:
            return vmap(self._one, randomness="different")(*self._state(), x.contiguous())
        run = [i for i in range(self.k) if i not in idle] or [0]
        out = {i: self._one(*self._state(i), x[i].contiguous(memory_format=self.memory_format)) for i in run}
        nothing = torch.zeros_like(out[run[0]])
        return torch.stack([out.get(i, nothing) for i in range(self.k)])

    @property
    def skeleton(self) -> nn.Module:
        """The network the copies run through: its modules and their settings, no state of its own (on
        the meta device; not a submodule)."""
        return self._skeleton[0]

    def stacked(self, name: str) -> torch.Tensor:
        """The stacked ``[k, ...]`` tensor of the network's parameter or buffer ``name``."""
        return getattr(self, _key(name))

    def copy_parameters(self, copy_index: int) -> CopyParameters:
        """Copy ``copy_index``'s parameters as views into the stacked ones (see ``CopyParameters``)."""
        return CopyParameters(self, copy_index)

    def copy_state_dict(self, copy_index: int) -> dict[str, torch.Tensor]:
        """Copy ``copy_index``'s state under the network's own names: what its separate run would save."""
        params, buffers = self._state(copy_index)
        state = {**params, **buffers}
        return {n: state[n].detach().clone() for n in self.state_names}


class CopyParameters:
    """One copy's parameters, each a view into its stacked tensor, shaped as in the copy's own network:
    what a function of a network's ``parameters()`` (a penalty, a max-norm constraint, a sparsity count)
    takes to act on one copy. Gradients through a view reach the stacked parameter; in-place writes land
    in it. The views are taken at each call, so each autograd graph has its own."""

    def __init__(self, stack: SeedStack, copy_index: int):
        self.stack, self.copy_index = stack, copy_index

    def parameters(self):
        return (self.stack.stacked(n)[self.copy_index] for n in self.stack.param_names)
