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
    # OneCycleLR divides by zero when its peak step (pct_start·total_steps − 1) is 0 or the last step
    # (tiny runs, full batch): keep the peak at least half a step inside
    pct_start = min(max(pct_start, 1.5 / total_steps), 1 - 0.5 / total_steps)
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


def step(optimizer, *, total_steps, steps_per_epoch, step_epochs=3, gamma=0.1):
    """Multiply the rate by gamma every step_epochs epochs."""
    return lr_scheduler.StepLR(optimizer, step_size=max(round(step_epochs * steps_per_epoch), 1), gamma=gamma)


def multistep(optimizer, *, total_steps, steps_per_epoch, milestone_epochs=(5, 8), gamma=0.1):
    """Multiply the rate by gamma at each milestone epoch."""
    milestones = [round(m * steps_per_epoch) for m in milestone_epochs]
    return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)


def plateau(
    optimizer, *, total_steps, steps_per_epoch, mode="min", factor=0.1, patience=2, threshold=1e-4, min_lr=0.0
):
    """Multiply the rate by factor once the monitored metric has not improved for patience ticks."""
    return lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold, min_lr=min_lr
    )


def warmup_cosine(
    optimizer, *, total_steps, steps_per_epoch, warmup_epochs=1.0, start_factor=0.01, eta_min=0.0
):
    """Linear warmup from start_factor·lr to lr over warmup_epochs, then cosine annealing to eta_min."""
    # at most half of a short run warms up, so there is always a cosine phase
    warmup = min(max(round(warmup_epochs * steps_per_epoch), 1), total_steps // 2)
    return lr_scheduler.SequentialLR(
        optimizer,
        [
            lr_scheduler.LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup),
            lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps - warmup, eta_min=eta_min),
        ],
        milestones=[warmup],
    )


def cosine_restarts(optimizer, *, total_steps, steps_per_epoch, cycle_epochs=2, t_mult=1, eta_min=0.0):
    """Cosine annealing with warm restarts (SGDR); a cycle lasts cycle_epochs epochs (times t_mult each
    restart), so its lowest rate falls on the last step of a cycle's last epoch: a snapshot point."""
    return lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cycle_epochs * steps_per_epoch, T_mult=t_mult, eta_min=eta_min
    )
