"""Optimizer parameter groups (weight decay, per-module lr rules), lr scaling, and option checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

import torch
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
) -> list[dict]:
    """Optimizer param groups: biases/normalization parameters (ndim <= 1) get no weight decay, and
    ``rules`` ({match, lr_scale, weight_decay_scale}; the first rule whose fnmatch pattern matches a
    parameter's or its module's name wins) scale lr and weight decay per module.

    With ``lr``/``weight_decay`` given, every group carries its own absolute settings; without them the
    groups inherit the optimizer's defaults (the no-decay group still sets weight_decay=0).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    _check_rules(rules, [n for n, _ in named])
    groups: dict[tuple, dict] = {}
    for name, p in named:
        index, rule = next(((i, r) for i, r in enumerate(rules) if _matches(name, r["match"])), (None, {}))
        decays = not (no_decay_norm_and_bias and p.ndim <= 1)
        if (index, decays) not in groups:
            group = {
                "params": [],
                "name": (rule.get("match", "") + ("" if decays else "/no_decay")).strip("/"),
            }
            if lr is not None:
                group["lr"] = lr * rule.get("lr_scale", 1.0)
            if not decays:
                group["weight_decay"] = 0.0
            elif weight_decay is not None:
                group["weight_decay"] = weight_decay * rule.get("weight_decay_scale", 1.0)
            groups[index, decays] = group
        groups[index, decays]["params"].append(p)
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
    convolutions (channels_last=true); a contiguous copy has the same logical order."""

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


def check_options(optimizer: Mapping, batch_size) -> None:
    """Fail before any work on optimizer and batch-size values outside their range (one line each)."""
    lr = optimizer.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise UserError(f"optimizer.lr must be a number > 0, got {lr!r}")
    momentum = optimizer.get("momentum")
    if momentum is not None and not 0 <= momentum < 1:
        raise UserError(f"optimizer.momentum must be in [0, 1), got {momentum}")
    for i, beta in enumerate(optimizer.get("betas") or ()):
        if not 0 <= beta < 1:
            raise UserError(f"optimizer.betas[{i}] must be in [0, 1), got {beta}")
    if not optimizer.get("weight_decay", 0) >= 0:
        raise UserError(f"optimizer.weight_decay must be >= 0, got {optimizer.get('weight_decay')}")
    if batch_size != "full" and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise UserError(f"data.batch_size must be an integer >= 1 or 'full', got {batch_size!r}")
