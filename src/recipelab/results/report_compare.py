"""The report's numbers, per variant: summaries over seeds, the mean validation curve, the cost, and the
paired comparison with the baseline (``stats``), judged over each metric's Holm family (``verdict``);
the seed plan (``power``)."""

from __future__ import annotations

import math
import statistics

import numpy as np
from scipy import stats as scipy_stats

from recipelab.results import power, stats, summary, verdict
from recipelab.results.report_jobs import Job

LOWER_IS_BETTER = ("loss", "nll", "ece", "brier", "error", "gap")
SUMMARY_METRICS = ("test/acc", "test/loss")  # always summarized; report.metrics are added
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
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
    reached = None if target is None else summary.epochs_to_reach(means, target)
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
        "metrics": {m: summary.summary(v for j in done if (v := j.metric(m)) is not None) for m in metrics},
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
    """Each other variant against the baseline, per metric; each metric's variants are one Holm family."""
    base_jobs = variant_jobs[baseline]
    out = []
    for metric in metrics:
        hib = higher_is_better(metric)
        base = _values(base_jobs, metric)
        rows = []
        for name, jobs in variant_jobs.items():
            if name == baseline:
                continue
            values = _values(jobs, metric)
            c = stats.paired_comparison(
                base,
                values,
                higher_is_better=hib,
                level=LEVEL,
                n_resamples=BOOTSTRAP_RESAMPLES,
                seed=BOOTSTRAP_SEED,
            )
            c["prob_improvement_unpaired"] = summary.prob_improvement(
                (v for v in values.values() if v is not None),
                (v for v in base.values() if v is not None),
                hib,
            )
            unpaired = set(c["unpaired_seeds"])
            c["unpaired_jobs"] = [
                {"job": j.name, "side": side, "seed": j.pair_key, "status": j.status}
                for side, js in (("baseline", base_jobs), ("variant", jobs))
                for j in js
                if j.pair_key in unpaired
            ]
            rows.append({"variant": name, "metric": metric, **c})
        for row, judged in zip(rows, verdict.verdicts(rows, alpha), strict=True):
            row["verdict"] = judged
            row["verdict"]["words"] = verdict_words(row)
        out += rows
    return out


def plan(comparisons: list[dict], effect: float) -> dict:
    """The seed planner over a pilot sweep: per variant and metric, the paired seeds whose t-test detects
    a true difference ``effect`` with power ``power.POWER`` at the level of its family (alpha / m), given
    the pilot's spread of the paired differences (None where it has fewer than 2 paired seeds)."""
    rows = [
        {
            "variant": c["variant"],
            "metric": c["metric"],
            "pilot_paired_seeds": c["n"],
            "sd_diff": c["sd_diff"],
            "family": c["verdict"]["family"],
            "level": c["verdict"]["power_level"],
            "seeds": power.seeds_needed(effect, c["sd_diff"], c["verdict"]["power_level"]),
        }
        for c in comparisons
    ]
    return {"effect": effect, "power": power.POWER, "max_seeds": power.MAX_SEEDS, "rows": rows}


def rules(alpha: float, arms: int) -> dict:
    """report.json's ``statistics``: every rule the verdicts follow, in the words the report quotes."""
    return {
        "alpha": alpha,
        "level": LEVEL,
        "interval": stats.interval_rule(BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED),
        "permutation": f"sign flips of the paired differences, exact up to {stats.EXACT_MAX_N} seeds, "
        f"else {BOOTSTRAP_RESAMPLES} sampled patterns",
        "decides": stats.deciding_test_rule(alpha, max(6, arms)),
        "multiple_comparisons": verdict.HOLM_FAMILY,
        "verdict": verdict.VERDICT_RULE,
        "power": power.power_rule(alpha),
        "paired_improvement": "improved seeds: the share of paired seeds on which the arm improved on the "
        f"baseline (a tie is not an improvement), with its exact Clopper-Pearson {LEVEL:.0%} interval",
        "unpaired_improvement": "rliable's probability of improvement, unpaired: P(a completed run of the "
        "arm beats one of the baseline) over all cross pairs, ties counting 1/2",
        "claim": verdict.CLAIM_RULE,
    }


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


def comparison_of(doc: dict, variant: str, metric: str) -> dict | None:
    return next((c for c in doc["comparisons"] if c["variant"] == variant and c["metric"] == metric), None)


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
    difference these seeds could have detected and the seeds that would detect the observed one."""
    v = c["verdict"]
    if c["n"] == 0:
        return "no paired seeds"
    if c["mean_diff"] == 0 and (c["n"] == 1 or c["sd_diff"] == 0):
        return "no difference detected (identical on every paired seed)"
    why = f"{v['test_used']}, Holm p = {fmt_p(v['adjusted_p'])}, m = {v['family']}"
    if v["test_used"] == "t-test" and not math.isfinite(v["p"]) and c["t_test"].get("note"):
        why = f"t-test: {c['t_test']['note']}"
    if v["verdict"] != verdict.NO_DIFFERENCE:
        return f"{v['verdict']} ({why})"
    mdd, seeds = v["min_detectable_diff"], v["seeds_for_observed"]
    can = f"could detect ±{mdd:.3g}" if math.isfinite(mdd) else "detectable difference undefined"
    level = f"power {v['power']:.0%} at α/{v['family']}"
    if seeds is not None:
        needed = f"{seeds} seeds would detect the observed {c['mean_diff']:+.3g}"
    elif c["n"] >= 2 and c["sd_diff"] > 0 and c["mean_diff"]:
        needed = f"more than {power.MAX_SEEDS} seeds would detect the observed {c['mean_diff']:+.3g}"
    else:
        needed = "seeds to detect the observed difference: undefined"
    return f"no difference detected ({why}; {can}, {level}; {needed})"
