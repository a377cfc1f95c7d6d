"""The ablation report of a sweep: ``python -m recipelab.report <sweep folder> [report.<key>=<value> ...]``.

Reads every job's ``metrics.json`` (its test metrics, validation history, cost and provenance), its
overrides and stored config; a variant is one value of the swept options (the seed and a k-fold fold are
repeats). Each variant is compared with the baseline over the seeds both completed (``report_compare``),
and the sweep folder gets ``report.json``, ``report.md``, ``report.csv``, ``accuracy.png``,
``val_curves.png``, ``paired_diff.png`` (``report_write``, ``report_plots``) and a W&B run
(``job_type=report``) in the sweep's group. Jobs that failed, diverged or were interrupted are counted and
marked, never averaged; a seed that one side lacks is reported as unpaired, never paired with another.

Options: ``report.baseline=<override string>`` (e.g. ``optimizer=sgd``; default: the experiment's
``report.baseline``, else the first variant), ``report.metrics=[test/acc,test/nll]`` (test/acc always,
and the metrics of the experiment's ``report.claim``), ``report.alpha=0.05``,
``report.allow_mixed_code=false`` (pair jobs whose git commit or dirty state differ), ``report.wandb=true``,
``report.plan_effect=0.005`` (the seed planner: the seeds each comparison needs to detect that
difference, from this sweep's spread).
The experiment's ``report.claim`` (``report_arms``) gets its words from the arms' verdicts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from recipelab.errors import UserError
from recipelab.results import report_compare as rc
from recipelab.results.report_arms import choose_baseline, claim_spec, judge_claim
from recipelab.results.report_jobs import (
    SEED_KEYS,
    Job,
    load_jobs,
    mixed_code,
    provenance,
    sweep_group,
    swept_keys,
    variants,
)

SWEEPS = Path("logs") / "multiruns"  # where a sweep folder is looked for when none is named


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    baseline: str | None = None
    metrics: tuple[str, ...] = ("test/acc",)
    alpha: float = 0.05
    allow_mixed_code: bool = False
    wandb: bool = True
    plan_effect: float | None = None


def _bool(key: str, text: str) -> bool:
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off"):
        return False
    raise UserError(f"report.{key}={text}: must be true or false")


def _alpha(key: str, text: str) -> float:
    try:
        alpha = float(text)
    except ValueError:
        alpha = -1.0
    if not 0 < alpha < 1:
        raise UserError(f"report.alpha={text}: must be a number between 0 and 1")
    return alpha


def _effect(key: str, text: str) -> float:
    try:
        effect = float(text)
    except ValueError:
        effect = 0.0
    if not effect > 0:
        raise UserError(f"report.plan_effect={text}: must be a positive difference, in the metric's units")
    return effect


def _metrics(key: str, text: str) -> tuple[str, ...]:
    names = [m.strip().strip("'\"") for m in text.strip().strip("[]").split(",")]
    return tuple(dict.fromkeys(["test/acc", *[m for m in names if m]]))


def _baseline(key: str, text: str) -> str | None:
    return None if text.strip() in ("", "null", "none") else text.strip()


PARSERS = {"baseline": _baseline, "metrics": _metrics, "alpha": _alpha}
PARSERS.update(allow_mixed_code=_bool, wandb=_bool, plan_effect=_effect)


def parse_args(argv: list[str]) -> tuple[Path, ReportOptions]:
    """``[<sweep folder>] [report.<key>=<value> ...]``; without a folder, the newest sweep under
    logs/multiruns."""
    folders = [a for a in argv if "=" not in a]
    if len(folders) > 1:
        raise UserError(f"one sweep folder, got {len(folders)}: {' '.join(folders)}")
    values = {}
    for arg in argv:
        key, sep, text = arg.partition("=")
        name = key.removeprefix("report.")
        if sep and (not key.startswith("report.") or name not in PARSERS):
            raise UserError(f"unknown option {key}; known: {', '.join(f'report.{k}' for k in PARSERS)}")
        if sep:
            values[name] = PARSERS[name](name, text)
    return (Path(folders[0]) if folders else latest_sweep()), ReportOptions(**values)


def latest_sweep(root: Path = SWEEPS) -> Path:
    sweeps = sorted(p.parent.parent for p in root.glob("*/*/*/.hydra"))
    if not sweeps:
        raise UserError(f"no sweep under {root}/; pass a sweep folder")
    return sweeps[-1]


def build(sweep_dir: Path, options: ReportOptions) -> dict:
    """report.json's content (nothing written)."""
    jobs = load_jobs(sweep_dir)
    groups, keys = variants(jobs), swept_keys(jobs)
    baseline, chosen_by = choose_baseline(groups, options.baseline)
    mixed = mixed_code(rc.pairs(groups, baseline))
    if mixed and not options.allow_mixed_code:
        raise UserError(
            f"jobs of different code would be paired: {'; '.join(mixed[:3])}"
            f"{f' and {len(mixed) - 3} more' if len(mixed) > 3 else ''} (git commit/dirty differ); "
            "pass report.allow_mixed_code=true to pair them anyway"
        )
    known = {m for j in jobs if j.status == "completed" for m in j.metrics}
    unknown = [m for m in options.metrics if known and m not in known]
    if unknown:
        raise UserError(
            f"report.metrics: {', '.join(unknown)} in no job's record (known: {', '.join(sorted(known))})"
        )
    claim = claim_spec(groups)
    claimed = [m for m in (claim[0] if claim else []) if m in known]  # one no job has stays undecided
    metrics = list(dict.fromkeys(["test/acc", *options.metrics, *claimed]))
    shown = list(dict.fromkeys([*rc.SUMMARY_METRICS, *metrics]))
    base_curve = rc.val_curve([j for j in groups[baseline] if j.status == "completed"])
    target = base_curve[-1]["mean"] if base_curve else None
    comparisons = rc.compare(groups, baseline, metrics, options.alpha)
    rows = []
    for name, members in groups.items():
        row = rc.summarize(name, members, shown, target)
        row["overrides"] = {k: members[0].overrides.get(k) for k in keys}
        row["baseline"] = name == baseline
        rows.append(row)
    return {
        "sweep_dir": str(sweep_dir),
        "group": sweep_group(jobs, sweep_dir),
        "options": dataclasses.asdict(options),
        "swept_keys": keys,
        "seed_keys": list(SEED_KEYS),
        "baseline": {"variant": baseline, "chosen_by": chosen_by, "final_mean_val_acc": target},
        "metrics": {m: {"higher_is_better": rc.higher_is_better(m), "compared": m in metrics} for m in shown},
        "statistics": rc.rules(options.alpha, len(groups) - 1),
        "provenance": {**provenance(jobs), "mixed_pairs": mixed},
        "variants": rows,
        "comparisons": comparisons,
        "claim": judge_claim(claim, comparisons),
        "plan": None if options.plan_effect is None else rc.plan(comparisons, options.plan_effect),
        "jobs": [_job(j, name) for name, js in groups.items() for j in js],
    }


def _job(job: Job, variant: str) -> dict:
    keys = ("train_time_s", "wall_time_s", "epochs", "steps", "provenance")
    return {
        "job": job.name,
        "variant": variant,
        "seed": job.pair_key,
        "status": job.status,
        "overrides": job.overrides,
        "metrics": job.metrics,  # metrics.json's, evaluate.json's and the train-test gap: each seed's values
        **{k: job.record.get(k) for k in keys},
    }


def report(sweep_dir: str | Path, options: ReportOptions | None = None) -> dict:
    """Write the report into the sweep folder (and log its W&B run); returns report.json's content."""
    from recipelab.results.report_write import write_all

    options = options or ReportOptions()
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"sweep folder {sweep_dir} does not exist")
    doc = build(sweep_dir, options)
    write_all(sweep_dir, doc, log_wandb=options.wandb)
    return doc
