"""Optimizer parameter groups: which parameters get weight decay."""

from __future__ import annotations

from torch import nn


def param_groups_weight_decay(model: nn.Module, no_decay_norm_and_bias: bool = True) -> list[dict]:
    """Two groups: weights that decay, and biases/normalization parameters (ndim <= 1) that do not.

    The no-decay group sets weight_decay=0 and so overrides the optimizer's default; the decay group keeps it.
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if no_decay_norm_and_bias and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "name": "decay"}]
    if no_decay:
        groups.append({"params": no_decay, "name": "no_decay", "weight_decay": 0.0})
    return groups
