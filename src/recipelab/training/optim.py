"""Optimizer parameter groups (weight decay, per-module lr rules), lr scaling, and option checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

import torch
import torch.distributed as dist
from torch import nn

from recipelab.errors import UserError

RULE_KEYS = {"match", "lr_scale", "weight_decay_scale"}
LR_SCALING = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}  # exponent of (batch / base_batch_size)


def _matches(name: str, pattern: str) -> bool:
    """A parameter matches if its name, or the name of a module that holds it, matches the pattern."""
    parts = name.split(".")
    return any(fnmatchcase(".".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def _check_rules(rules: Sequence[Mapping], names: list[str]) -> None:
    for i, rule in enumerate(rules):
        key = f"param_groups.rules[{i}]"
        unknown = set(rule) - RULE_KEYS
        if unknown or "match" not in rule:
            raise UserError(f"{key} takes keys {sorted(RULE_KEYS)} ('match' required), got {sorted(rule)}")
        if not any(_matches(n, rule["match"]) for n in names):
            raise UserError(
                f"{key}.match={rule['match']!r} matches no parameter or module; names look like "
                f"{', '.join(names[:3])}, ..., {names[-1]}"
            )
        for scale in ("lr_scale", "weight_decay_scale"):
            if scale in rule and not rule[scale] >= 0:
                raise UserError(f"{key}.{scale} must be >= 0, got {rule[scale]}")


def param_groups_weight_decay(
    model: nn.Module,
    no_decay_norm_and_bias: bool = True,
    rules: Sequence[Mapping] = (),
    lr: float | None = None,
    weight_decay: float | None = None,
    decoupled_weight_decay: bool = False,
) -> list[dict]:
    """Optimizer param groups: biases/normalization parameters (ndim <= 1) get no weight decay, and
    ``rules`` ({match, lr_scale, weight_decay_scale}; the first rule whose fnmatch pattern matches a
    parameter's or its module's name wins) scale lr and weight decay per module. A tensor may carry its
    own ``lr_scale`` attribute (normalization.bias_lr_scale sets it); it multiplies the rule's.

    With ``lr``/``weight_decay`` given, every group carries its own absolute settings; without them the
    groups inherit the optimizer's defaults (the no-decay group still sets weight_decay=0).
    ``decoupled_weight_decay`` (needs ``lr``): each group's torch weight_decay is ``weight_decay / lr`` of
    that group, so that SGD's per-step shrink factor ``lr_t * weight_decay`` is ``weight_decay`` at the
    peak rate whatever the rate (airbench's decoupling, as in AdamW; torch's SGD has no such option).
    """
    if decoupled_weight_decay and lr is None:
        raise UserError("param_groups.decoupled_weight_decay needs the optimizer's lr")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    _check_rules(rules, [n for n, _ in named])
    groups: dict[tuple, dict] = {}
    for name, p in named:
        index, rule = next(((i, r) for i, r in enumerate(rules) if _matches(name, r["match"])), (None, {}))
        decays = not (no_decay_norm_and_bias and p.ndim <= 1)
        own = getattr(p, "lr_scale", 1.0)
        if (index, decays, own) not in groups:
            name_parts = [
                rule.get("match", ""),
                "" if decays else "no_decay",
                "" if own == 1 else f"lr_x{own:g}",
            ]
            group = {"params": [], "name": "/".join(part for part in name_parts if part)}
            if lr is not None:
                group["lr"] = lr * rule.get("lr_scale", 1.0) * own
            if not decays:
                group["weight_decay"] = 0.0
            elif weight_decay is not None:
                group["weight_decay"] = weight_decay * rule.get("weight_decay_scale", 1.0)
                if decoupled_weight_decay:
                    group["weight_decay"] /= max(group["lr"], 1e-12)
            groups[index, decays, own] = group
        groups[index, decays, own]["params"].append(p)
    for group in groups.values():
        group["name"] = group["name"] or "decay"
    return list(groups.values())


def describe_param_groups(optimizer: torch.optim.Optimizer) -> str:
    """One line per group: its name, tensor and element counts, lr and weight decay."""
    lines = [f"{type(optimizer).__name__}: {len(optimizer.param_groups)} param groups"]
    for i, g in enumerate(optimizer.param_groups):
        n = sum(p.numel() for p in g["params"])
        lines.append(
            f"  [{i}] {g.get('name', i)}: {len(g['params'])} tensors, {n} parameters, "
            f"lr {g['lr']:.4g}, weight_decay {g.get('weight_decay', 0.0):.4g}"
        )
    return "\n".join(lines)


def scaled_lr(lr: float, batch_size: int, rule: str = "none", base_batch_size: int = 256) -> float:
    """The lr for ``batch_size`` from the one tuned at ``base_batch_size``: linear (Goyal et al. 2017)
    or square-root (Krizhevsky 2014; Hoffer et al. 2017) scaling, or none."""
    if rule not in LR_SCALING:
        raise UserError(f"param_groups.lr_scaling must be one of {sorted(LR_SCALING)}, got {rule!r}")
    return lr * (batch_size / base_batch_size) ** LR_SCALING[rule]


class _LBFGS(torch.optim.LBFGS):
    """torch's LBFGS flattens each gradient with .view(-1), which fails on the channels-last gradients of
    convolutions (channels_last=true); a contiguous copy has the same logical order.

    Under DDP each process's closure returns its own shard's loss while the gradients are averaged: the
    line search and the stopping tests compare losses, so the processes would take different numbers of
    evaluations and wait on each other's gradients forever (a 2-process run stopped using the CPU in its
    first epoch and never ended). The closure's loss is averaged over the processes as the gradients are:
    every process decides the same."""

    def step(self, closure):
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().step(closure)

        def global_loss():
            mean = closure().detach().clone()
            dist.all_reduce(mean)
            return mean / dist.get_world_size()

        return super().step(global_loss)

    def _gather_flat_grad(self):
        for p in self._params:
            if p.grad is not None and not p.grad.is_contiguous():
                p.grad = p.grad.contiguous()
        return super()._gather_flat_grad()


def lbfgs(params: Iterable, **options) -> torch.optim.LBFGS:
    """torch's LBFGS with the param groups merged: it takes one group only (one flat parameter vector).

    LBFGS has no weight decay; a param-group rule that gives some parameters another lr cannot apply.
    """
    groups = [g if isinstance(g, dict) else {"params": [g]} for g in params]
    lrs = {g["lr"] for g in groups if "lr" in g}
    if len(lrs) > 1:
        raise UserError(
            "optimizer=lbfgs takes one lr for all parameters: drop the lr_scale param_groups.rules"
        )
    group = {"params": [p for g in groups for p in g["params"]], **({"lr": lrs.pop()} if lrs else {})}
    return _LBFGS([group], **options)
