"""Batches sliced from in-memory tensors in a reproducible per-epoch order, and the uint8 → float step.

The data path follows cifar10-airbench: no Dataset/DataLoader workers, no per-sample PIL transforms.
On 2 cores a worker pool costs more than the whole augmentation done as batched tensor ops.
"""

from __future__ import annotations

import math

import torch


class EpochPermutation:
    """The sample order of one epoch, drawn from a generator seeded with (seed, epoch).

    Any epoch's order can be reproduced without carrying generator state. Lightning calls ``set_epoch``
    on a loader's ``sampler`` at every epoch start, as it does for a DistributedSampler. Under DDP each
    rank takes every world_size-th sample of the same permutation: disjoint shards of one global order.
    """

    def __init__(self, n, shuffle=False, seed=0, rank=0, world_size=1, even=True):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.even = even  # equal shards (training: equal step counts) or every sample once (evaluation)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.n
        return self.n // self.world_size if self.even else len(range(self.rank, self.n, self.world_size))

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.world_size > 1:  # equal shards keep the ranks' step counts equal
            order = order[: len(self) * self.world_size] if self.even else order
            order = order[self.rank :: self.world_size]
        return order


class TensorBatchLoader:
    """Yields (images, labels) batches of in-memory tensors in the order of an EpochPermutation."""

    batch_sampler = None  # Lightning inspects loaders as it would a DataLoader: batches come from `sampler`

    def __init__(
        self,
        images,
        labels,
        batch_size,
        shuffle=False,
        drop_last=False,
        seed=0,
        rank=0,
        world_size=1,
        even=True,
        with_index=False,
    ):
        self.images, self.labels = images, labels
        self.with_index = with_index  # batches also carry their samples' indices (for the alternating flip)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler = EpochPermutation(len(labels), shuffle, seed, rank, world_size, even)
        self.position = 0  # batches of the current epoch handed out: where a checkpoint taken now resumes
        self._resume: dict | None = None

    # Lightning saves and restores the state of loaders with these two methods (a mid-epoch resume).
    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batch": self.position}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        # runs at the first batch, after Lightning's set_epoch: a restored position applies to its own epoch
        resume, self._resume = self._resume, None
        start = resume["batch"] if resume and resume["epoch"] == self.sampler.epoch else 0
        in_order = not self.sampler.shuffle and self.sampler.world_size == 1
        order = None if in_order else self.sampler.indices().to(self.labels.device)
        for b in range(start, len(self)):
            self.position = b + 1
            if in_order:  # slices, no copies
                sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
                batch, idx = (self.images[sl], self.labels[sl]), sl
            else:
                idx = order[b * self.batch_size : (b + 1) * self.batch_size]
                batch = self.images[idx], self.labels[idx]
            if self.with_index:
                idx = torch.arange(len(self.labels))[idx] if isinstance(idx, slice) else idx
                batch = (*batch, idx)
            yield batch


def prepare_batch(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, augmentation=None, **where):
    """uint8 [N, C, H, W] → float, augmented in [0, 1] (zero padding is black), then standardized with
    the per-channel ``mean`` and ``std`` (shaped [1, C, 1, 1], on the images' device). ``where``: the
    samples' ``index`` and the ``epoch``, for the ops that use them."""
    x = images.float().div_(255.0)
    if augmentation is not None:
        x = augmentation(x, **where)
    return (x - mean) / std
