"""The report's plots: test accuracy per variant (each seed and the mean ± std), the mean validation curve
per variant with a 95% band over seeds, and each variant's paired difference to the baseline with its
interval."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _accuracy(plt, sweep_dir: Path, doc: dict) -> Path:
    variants = doc["variants"]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(variants)), 4))
    accs = {j["job"]: j["metrics"].get("test/acc") for j in doc["jobs"] if j["status"] == "completed"}
    for i, v in enumerate(variants):
        s = v["metrics"]["test/acc"]
        color = "tab:orange" if v["baseline"] else "tab:blue"
        if s["n"]:
            std = 0 if math.isnan(s["std"]) else s["std"]
            ax.bar(i, s["mean"], yerr=std, capsize=4, color=color, alpha=0.6)
        seeds = [accs[j["job"]] for j in v["jobs"] if accs.get(j["job"]) is not None]
        ax.plot(np.full(len(seeds), i) + np.linspace(-0.15, 0.15, len(seeds)), seeds, "k.", ms=5)
        if v["failed"] or v["diverged"] or v["interrupted"]:
            note = f"{v['failed']} failed, {v['diverged']} diverged, {v['interrupted']} interrupted"
            ax.annotate(note, (i, 0), ha="center", va="bottom", color="tab:red", fontsize=8, rotation=90)
    names = [v["variant"] + (" (baseline)" if v["baseline"] else "") for v in variants]
    ax.set_xticks(range(len(variants)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test/acc (mean ± std; dots: seeds)")
    ax.set_title("test accuracy per variant")
    return _save(plt, fig, sweep_dir / "accuracy.png")


def _curves(plt, sweep_dir: Path, doc: dict) -> Path:
    import matplotlib

    fig, ax = plt.subplots(figsize=(6, 4))
    for v in doc["variants"]:
        curve = v["val_curve"]
        if not curve:
            continue
        epochs = [p["epoch"] for p in curve]
        (line,) = ax.plot(epochs, [p["mean"] for p in curve], marker="o", label=v["variant"])
        low = np.clip(np.array([p["low"] for p in curve], dtype=float), 0, 1)  # accuracy lies in [0, 1]
        high = np.clip(np.array([p["high"] for p in curve], dtype=float), 0, 1)
        if np.isfinite(low).any():
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch (from 0, as Lightning counts)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("val/acc (mean over seeds, 95% t-band)")
    ax.set_title("validation accuracy per variant")
    if ax.lines:
        ax.legend(fontsize=8)
    return _save(plt, fig, sweep_dir / "val_curves.png")


def _paired(plt, sweep_dir: Path, doc: dict) -> Path:
    metrics = [m for m, info in doc["metrics"].items() if info["compared"]]
    others = [v["variant"] for v in doc["variants"] if not v["baseline"]]
    fig, axes = plt.subplots(
        len(metrics), 1, figsize=(9, 0.8 + max(1.5, 0.5 * len(others)) * len(metrics)), squeeze=False
    )
    colors = {"better": "tab:green", "worse": "tab:red"}
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        comps = [c for c in doc["comparisons"] if c["metric"] == metric]
        for i, c in enumerate(comps):
            mean, low, high = c["mean_diff"], c["ci_low"], c["ci_high"]
            if math.isnan(mean):
                continue
            err = [[mean - low], [high - mean]] if not math.isnan(low) else None
            color = colors.get(c["verdict"]["verdict"], "tab:gray")
            ax.errorbar(mean, i, xerr=err, fmt="o", color=color, capsize=4)
        ax.axvline(0, color="k", linewidth=1)
        ax.set_yticks(range(len(comps)), [c["variant"] for c in comps], fontsize=8)
        ax.set_ylim(-0.7, max(len(comps), 1) - 0.3)
        better = "higher" if doc["metrics"][metric]["higher_is_better"] else "lower"
        methods = "/".join(sorted({c["ci_method"] for c in comps if c["ci_method"]})) or "none"
        ax.set_xlabel(f"{metric}: variant − baseline, 95% CI: {methods} ({better} is better)", fontsize=9)
        if not comps:
            ax.text(0.5, 0.5, "no variant besides the baseline", ha="center", transform=ax.transAxes)
    axes[0, 0].set_title(f"paired difference to the baseline\n{doc['baseline']['variant']}", fontsize=9)
    return _save(plt, fig, sweep_dir / "paired_diff.png")


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot(sweep_dir: Path, doc: dict) -> list[Path]:
    """accuracy.png, val_curves.png and paired_diff.png from report.json's content."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return [_accuracy(plt, sweep_dir, doc), _curves(plt, sweep_dir, doc), _paired(plt, sweep_dir, doc)]
