"""The ablation report of a sweep: ``python -m recipelab.report <sweep folder>``.

Reads every job's ``metrics.json``, its overrides (``.hydra/overrides.yaml``) and its logged history (the
offline W&B run, else the CSV logger's file), and writes into the sweep folder: ``report.md`` and
``report.csv`` (one row per variant: the swept options except the seed), ``accuracy.png`` (test accuracy
per variant, mean ± std) and ``val_curves.png`` (mean validation accuracy per epoch, per variant), and logs
them as a W&B run with ``job_type=report`` in the sweep's group. Jobs that failed or diverged are counted
and marked, never averaged.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from recipelab.errors import UserError
from recipelab.results.report_plots import plot
from recipelab.results.runs import job_dirs, read_history, read_overrides, read_record
from recipelab.results.wandb_run import log_result
from recipelab.run import tracking

SEED_KEYS = ("seed",)
COLUMNS = (
    "variant",
    "n",
    "completed",
    "failed",
    "diverged",
    "test/acc mean",
    "test/acc std",
    "test/loss mean",
    "test/loss std",
    "best epoch",
    "wall time s",
)


@dataclass
class Job:
    folder: Path
    overrides: dict[str, str]
    record: dict
    history: list[dict] = field(default_factory=list)  # rows with an epoch and val/acc

    @property
    def status(self) -> str:
        return self.record.get("status", "failed")  # no record: the job died before writing one


def load_jobs(sweep_dir: Path) -> list[Job]:
    jobs = []
    for folder in job_dirs(sweep_dir):
        jobs.append(Job(folder, read_overrides(folder), read_record(folder) or {}, read_history(folder)))
    if not jobs:
        raise UserError(f"{sweep_dir}: no sweep jobs found (job folders hold .hydra/); pass a sweep folder")
    return jobs


def swept_keys(jobs: list[Job]) -> list[str]:
    """The overrides whose value differs between jobs, the seed left out: what makes a variant."""
    keys = sorted({k for j in jobs for k in j.overrides})
    varying = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    return [k for k in varying if k not in SEED_KEYS]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); NaN where there are too few values."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def val_curve(jobs: list[Job]) -> dict[int, float]:
    """Mean validation accuracy per epoch over the variant's completed jobs."""
    per_epoch = defaultdict(list)
    for job in jobs:
        for row in job.history:
            per_epoch[int(row["epoch"])].append(float(row["val/acc"]))
    return {e: statistics.fmean(v) for e, v in sorted(per_epoch.items())}


def variant_rows(jobs: list[Job]) -> tuple[list[dict], dict[str, list[Job]]]:
    keys = swept_keys(jobs)
    groups: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        groups[", ".join(f"{k}={job.overrides.get(k, '-')}" for k in keys) or "all jobs"].append(job)
    rows = []
    for variant, members in groups.items():
        done = [j for j in members if j.status == "completed"]
        acc = mean_std([j.record["metrics"]["test/acc"] for j in done])
        loss = mean_std([j.record["metrics"]["test/loss"] for j in done])
        curve = val_curve(done)
        walls = [j.record["wall_time_s"] for j in done if "wall_time_s" in j.record]
        rows.append(
            {
                "variant": variant,
                "n": len(members),
                "completed": len(done),
                "failed": sum(j.status == "failed" for j in members),
                "diverged": sum(j.status == "diverged" for j in members),
                "test/acc mean": acc[0],
                "test/acc std": acc[1],
                "test/loss mean": loss[0],
                "test/loss std": loss[1],
                "best epoch": max(curve, key=curve.get) if curve else None,
                "wall time s": statistics.fmean(walls) if walls else float("nan"),
            }
        )
    return rows, groups


def _pm(mean: float, std: float) -> str:
    if mean != mean:  # NaN: no completed job
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if std == std else f"{mean:.4f}"


def write_markdown(path: Path, sweep_dir: Path, rows: list[dict], jobs: list[Job]) -> None:
    lines = [
        f"# Ablation report: {sweep_dir.name}",
        "",
        f"{len(jobs)} jobs; mean ± sample std (n − 1) over each variant's completed jobs.",
        "",
        "| variant | n | test/acc | test/loss | best epoch | wall time (s) | failed | diverged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        wall = f"{r['wall time s']:.1f}" if r["wall time s"] == r["wall time s"] else "—"
        best = "—" if r["best epoch"] is None else r["best epoch"]
        acc, loss = _pm(r["test/acc mean"], r["test/acc std"]), _pm(r["test/loss mean"], r["test/loss std"])
        cells = [r["variant"], r["n"], acc, loss, best, wall, r["failed"], r["diverged"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    shown = [*swept_keys(jobs), *SEED_KEYS]
    lines += ["", "## Jobs", "", "| job | options | status | test/acc |", "| --- | --- | --- | --- |"]
    for j in jobs:
        status = j.status if j.status == "completed" else f"**{j.status.upper()}**"
        acc = j.record.get("metrics", {}).get("test/acc")
        overrides = " ".join(f"{k}={j.overrides[k]}" for k in shown if k in j.overrides)
        lines.append(
            f"| {j.folder.name} | `{overrides}` | {status} | {'—' if acc is None else f'{acc:.4f}'} |"
        )
    lines += [
        "",
        "![test accuracy per variant](accuracy.png)",
        "",
        "![validation curves](val_curves.png)",
        "",
    ]
    path.write_text("\n".join(lines))


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def report(sweep_dir: str | Path, use_wandb: bool = True) -> list[dict]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"sweep folder {sweep_dir} does not exist")
    jobs = load_jobs(sweep_dir)
    rows, groups = variant_rows(jobs)
    write_markdown(sweep_dir / "report.md", sweep_dir, rows, jobs)
    write_csv(sweep_dir / "report.csv", rows)
    curves = {v: val_curve([j for j in members if j.status == "completed"]) for v, members in groups.items()}
    images = plot(sweep_dir, rows, curves)
    if use_wandb:
        group = next(
            (j.record["group"] for j in jobs if "group" in j.record), tracking.sweep_group(sweep_dir)
        )
        log_result(
            "report",
            group,
            sweep_dir,
            {"sweep_dir": str(sweep_dir)},
            {
                "report": lambda wandb: wandb.Table(
                    columns=list(COLUMNS), data=[[r[c] for c in COLUMNS] for r in rows]
                ),
                **{f"plots/{p.stem}": (lambda wandb, p=p: wandb.Image(str(p))) for p in images},
            },
            {},
            name=f"report_{sweep_dir.name}",
        )
    return rows
