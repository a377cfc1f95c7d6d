"""The report's numbers, per variant: summaries over seeds, the mean validation curve, the cost, and the
paired comparison with the baseline (statistics from ``stats``, Holm across variants per metric)."""

from __future__ import annotations

import math
import statistics

import numpy as np
from scipy import stats as scipy_stats

from recipelab.results import stats
from recipelab.results.report_jobs import Job

LOWER_IS_BETTER = ("loss", "nll", "ece", "brier", "error", "gap")
SUMMARY_METRICS = ("test/acc", "test/loss")  # always summarized; report.metrics are added
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
POWER = 0.8  # of the minimum detectable difference (stats.min_detectable_diff)
NAN = float("nan")


def higher_is_better(metric: str) -> bool:
    name = metric.rsplit("/", 1)[-1]
    return not any(word in name for word in LOWER_IS_BETTER)


def _mean(values) -> float:
    values = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return statistics.fmean(values) if values else NAN


def val_curve(jobs: list[Job]) -> list[dict]:
    """Mean val/acc per epoch over the jobs, with a 95% t-interval over seeds (n >= 2)."""
    per_epoch: dict[int, list[float]] = {}
    for job in jobs:
        for row in job.history:
            per_epoch.setdefault(int(row["epoch"]), []).append(float(row["val/acc"]))
    curve = []
    for epoch, values in sorted(per_epoch.items()):
        x = np.asarray(values)
        mean, low, high = float(x.mean()), NAN, NAN
        if x.size >= 2:
            half = scipy_stats.t.ppf(0.5 + LEVEL / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
            low, high = mean - float(half), mean + float(half)
        curve.append({"epoch": epoch, "n": int(x.size), "mean": mean, "low": low, "high": high})
    return curve


def summarize(name: str, jobs: list[Job], metrics: list[str], target: float | None) -> dict:
    """One variant: its jobs' statuses, each metric's summary over completed jobs, curve and cost.
    ``target``: the baseline's final mean val/acc (its epochs and seconds to reach it are the cost)."""
    done = [j for j in jobs if j.status == "completed"]
    curve = val_curve(done)
    means = {p["epoch"]: p["mean"] for p in curve}
    reached = None if target is None else stats.epochs_to_reach(means, target)
    # the jobs' mean training seconds by the end of that epoch (history rows carry time_s)
    seconds = [row.get("time_s") for j in done for row in j.history if int(row["epoch"]) == reached]
    speeds = [
        j.train_images() * j.record["epochs"] / j.record["train_time_s"]
        for j in done
        if j.train_images() and j.record.get("epochs") and j.record.get("train_time_s")
    ]
    return {
        "variant": name,
        "overrides": {},  # filled by the caller, which knows the swept keys
        "n": len(jobs),
        **{s: sum(j.status == s for j in jobs) for s in ("completed", "failed", "diverged", "interrupted")},
        "jobs": [{"job": j.name, "seed": j.pair_key, "status": j.status} for j in jobs],
        "metrics": {m: stats.summary(v for j in done if (v := j.metric(m)) is not None) for m in metrics},
        "val_curve": curve,
        "best_epoch": max(curve, key=lambda p: p["mean"])["epoch"] if curve else None,
        "cost": {
            "train_time_s": _mean(j.record.get("train_time_s") for j in done),
            "wall_time_s": _mean(j.record.get("wall_time_s") for j in done),
            "epochs": _mean(j.record.get("epochs") for j in done),
            "epochs_to_baseline_val_acc": None if reached is None else reached + 1,
            "seconds_to_baseline_val_acc": _mean(seconds),
            "images_per_s": _mean(speeds),
        },
    }


def _values(jobs: list[Job], metric: str) -> dict:
    """seed → the job's value; None where the job did not complete (so the seed shows as unpaired)."""
    return {j.pair_key: j.metric(metric) for j in jobs}


def compare(
    variant_jobs: dict[str, list[Job]], baseline: str, metrics: list[str], alpha: float
) -> list[dict]:
    """Each other variant against the baseline, per metric; Holm across the variants of each metric."""
    base_jobs = variant_jobs[baseline]
    out = []
    for metric in metrics:
        hib = higher_is_better(metric)
        base = _values(base_jobs, metric)
        rows = []
        for name, jobs in variant_jobs.items():
            if name == baseline:
                continue
            c = stats.paired_comparison(
                base,
                _values(jobs, metric),
                higher_is_better=hib,
                level=LEVEL,
                n_resamples=BOOTSTRAP_RESAMPLES,
                seed=BOOTSTRAP_SEED,
            )
            unpaired = set(c["unpaired_seeds"])
            c["unpaired_jobs"] = [
                {"job": j.name, "side": side, "seed": j.pair_key, "status": j.status}
                for side, js in (("baseline", base_jobs), ("variant", jobs))
                for j in js
                if j.pair_key in unpaired
            ]
            rows.append({"variant": name, "metric": metric, **c})
        adjusted = stats.holm([stats.decisive_test(r, alpha, len(rows))[1] for r in rows])
        for row, adj in zip(rows, adjusted, strict=True):
            row["verdict"] = stats.verdict(row, adj, alpha, hib, family=len(rows))
            row["verdict"]["power"] = POWER
            row["verdict"]["words"] = verdict_words(row)
        out += rows
    return out


def pairs(variant_jobs: dict[str, list[Job]], baseline: str) -> list[tuple[Job, Job]]:
    """(baseline job, variant job) of every seed the two share, over all other variants."""
    base = {j.pair_key: j for j in variant_jobs[baseline]}
    return [
        (base[j.pair_key], j)
        for name, jobs in variant_jobs.items()
        if name != baseline
        for j in jobs
        if j.pair_key in base
    ]


def fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def fmt_p(p) -> str:
    if p is None or not math.isfinite(p):
        return "—"
    return f"{p:.3g}" if p >= 0.001 else f"{p:.1e}"


def verdict_words(c: dict) -> str:
    """The verdict in plain words, with the test that decided and, when nothing was found, the size of
    difference these seeds could have detected."""
    v = c["verdict"]
    if c["n"] == 0:
        return "no paired seeds"
    if c["mean_diff"] == 0 and (c["n"] == 1 or c["sd_diff"] == 0):
        return "no difference detected (identical on every paired seed)"
    why = f"{v['test_used']}, Holm p = {fmt_p(v['adjusted_p'])}"
    if v["test_used"] == "t-test" and not math.isfinite(v["p"]) and c["t_test"].get("note"):
        why = f"t-test: {c['t_test']['note']}"
    if v["verdict"] != "no difference detected":
        return f"{v['verdict']} ({why})"
    mdd = v["min_detectable_diff"]
    can = f"; could detect ±{mdd:.3g}" if math.isfinite(mdd) and mdd > 0 else ""
    return f"no difference detected ({why}{can})"
