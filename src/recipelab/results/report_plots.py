"""The report's plots: test accuracy per variant, and validation curves per variant."""

from __future__ import annotations

from pathlib import Path


def plot(sweep_dir: Path, rows: list[dict], curves: dict[str, dict[int, float]]) -> list[Path]:
    """``curves``: each variant's mean val/acc per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(rows)), 4))
    means = [r["test/acc mean"] for r in rows]
    stds = [r["test/acc std"] if r["test/acc std"] == r["test/acc std"] else 0 for r in rows]
    ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color="tab:blue")
    for i, r in enumerate(rows):
        if r["failed"] or r["diverged"]:
            ax.annotate(
                f"{r['failed']} failed, {r['diverged']} diverged",
                (i, 0),
                ha="center",
                va="bottom",
                color="tab:red",
                fontsize=8,
                rotation=90,
            )
    ax.set_xticks(range(len(rows)), [r["variant"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test/acc (mean ± std)")
    ax.set_title("test accuracy per variant")
    fig.tight_layout()
    accuracy = sweep_dir / "accuracy.png"
    fig.savefig(accuracy, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, curve in curves.items():
        if curve:
            ax.plot(list(curve), list(curve.values()), marker="o", label=variant)
    ax.set_xlabel("epoch (from 0, as Lightning counts)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("val/acc (mean over seeds)")
    ax.set_title("validation accuracy per variant")
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    curves = sweep_dir / "val_curves.png"
    fig.savefig(curves, dpi=120)
    plt.close(fig)
    return [accuracy, curves]
