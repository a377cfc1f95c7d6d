"""Scheduler builders with one signature: (optimizer, *, total_steps, steps_per_epoch, **options).

Steps are scheduler ticks (optimizer steps for interval=step, epochs for interval=epoch), so one
builder serves both intervals. Each wraps a torch.optim.lr_scheduler class.
"""

from __future__ import annotations

from torch.optim import lr_scheduler


def constant(optimizer, *, total_steps, steps_per_epoch):
    """A constant rate, as a scheduler so that every recipe logs and checkpoints the same way."""
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def one_cycle(
    optimizer,
    *,
    total_steps,
    steps_per_epoch,
    pct_start=0.25,
    div_factor=25.0,
    final_div_factor=1e4,
    anneal_strategy="cos",
    three_phase=False,
    cycle_momentum=False,
):
    """Warm up from lr/div_factor to each group's lr, then anneal to lr/(div_factor*final_div_factor)."""
    peaks = [group["lr"] for group in optimizer.param_groups]
    # OneCycleLR divides by zero when its warm-up phase spans under 2 steps (tiny quick runs)
    pct_start = max(pct_start, 2.0 / total_steps) if total_steps > 4 else 0.5
    return lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=peaks,
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        anneal_strategy=anneal_strategy,
        three_phase=three_phase,
        cycle_momentum=cycle_momentum,
    )


def cosine(optimizer, *, total_steps, steps_per_epoch, eta_min=0.0):
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=eta_min)
