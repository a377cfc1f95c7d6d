"""The report's files: report.json (everything, NaN as null), report.csv (one row per variant), report.md
(variants with their verdict, the paired comparisons, the jobs), the plots, and the W&B report run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from recipelab.results.report_compare import fmt, fmt_p
from recipelab.results.report_plots import plot
from recipelab.results.wandb_run import log_result

COLUMNS = (
    "variant",
    "baseline",
    "n",
    "completed",
    "failed",
    "diverged",
    "interrupted",
    "test/acc mean",
    "test/acc std",
    "test/loss mean",
    "test/loss std",
    "best epoch",
    "wall time s",
    "train time s",
    "epochs to baseline val/acc",
    "seconds to baseline val/acc",
    "images/s",
)
STAT_COLUMNS = ("iqm", "min", "max")
COMPARISON_COLUMNS = ("paired seeds", "diff", "diff ci low", "diff ci high", "p perm", "p t-test")
VERDICT_COLUMNS = ("p holm", "test used", "verdict", "min detectable diff", "prob improvement")


def _reach(cost: dict) -> str:
    """Epochs to the baseline's final mean val/acc, with the training seconds by then where known."""
    epochs, seconds = cost["epochs_to_baseline_val_acc"], fmt(cost["seconds_to_baseline_val_acc"], 1)
    return fmt(epochs) + (f" ({seconds} s)" if epochs is not None and seconds != "—" else "")


def clean(x):
    """JSON-safe: NaN and infinities become null, tuples lists."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    return x


def comparison_of(doc: dict, variant: str, metric: str) -> dict | None:
    return next((c for c in doc["comparisons"] if c["variant"] == variant and c["metric"] == metric), None)


def csv_rows(doc: dict) -> tuple[list[str], list[dict]]:
    compared = [m for m, info in doc["metrics"].items() if info["compared"]]
    columns = [*COLUMNS]
    columns += [f"{m} {s}" for m in doc["metrics"] for s in ("mean", "std", *STAT_COLUMNS)]
    columns += [f"{m} {s}" for m in compared for s in (*COMPARISON_COLUMNS, *VERDICT_COLUMNS)]
    columns = list(dict.fromkeys(columns))
    rows = []
    for v in doc["variants"]:
        cost = v["cost"]
        row = {
            **{k: v[k] for k in COLUMNS[:7]},
            "best epoch": v["best_epoch"],
            "wall time s": cost["wall_time_s"],
            "train time s": cost["train_time_s"],
            "epochs to baseline val/acc": cost["epochs_to_baseline_val_acc"],
            "seconds to baseline val/acc": cost["seconds_to_baseline_val_acc"],
            "images/s": cost["images_per_s"],
        }
        for m, s in v["metrics"].items():
            row.update({f"{m} {k}": s[k] for k in ("mean", "std", *STAT_COLUMNS)})
        for m in compared:
            c = comparison_of(doc, v["variant"], m)
            if c is not None:
                ver = c["verdict"]
                values = (c["n"], c["mean_diff"], c["ci_low"], c["ci_high"], c["p_perm"], c["t_test"]["p"])
                row.update({f"{m} {k}": x for k, x in zip(COMPARISON_COLUMNS, values, strict=True)})
                values = (ver["adjusted_p"], ver["test_used"], ver["verdict"], ver["min_detectable_diff"])
                values += (c["prob_improvement"],)
                row.update({f"{m} {k}": x for k, x in zip(VERDICT_COLUMNS, values, strict=True)})
        rows.append({k: row.get(k) for k in columns})
    return columns, rows


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(clean(rows))


def _pm(s: dict) -> str:
    if s["n"] == 0:
        return "—"
    return f"{s['mean']:.4f} ± {s['std']:.4f}" if math.isfinite(s["std"]) else f"{s['mean']:.4f}"


def _interval(c: dict) -> str:
    if c["n"] == 0:
        return "—"
    return f"{c['mean_diff']:+.4f} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def markdown(doc: dict) -> str:
    base, stat, alpha = doc["baseline"]["variant"], doc["statistics"], doc["statistics"]["alpha"]
    compared = [m for m, info in doc["metrics"].items() if info["compared"]]
    keys = ", ".join(doc["swept_keys"]) or "—"
    lines = [
        f"# Ablation report: {Path(doc['sweep_dir']).name}",
        "",
        f"{len(doc['jobs'])} jobs, {len(doc['variants'])} variants (swept: {keys}); "
        f"baseline `{base}` (chosen by {doc['baseline']['chosen_by']}).",
        "",
        "- per variant: mean ± sample std (n − 1) over its completed jobs; IQM from 4 seeds",
        "- each variant − the baseline over the seeds both completed: the mean paired difference, its "
        f"{stat['level']:.0%} bootstrap interval ({stat['bootstrap']})",
        f"- decided by {stat['decides']} ({stat['t_test_assumption']}); {stat['multiple_comparisons']}; "
        f"α = {alpha}",
        f"- {stat['verdict']}; otherwise no difference detected, with the smallest difference these seeds "
        f"could detect ({stat['min_detectable_diff']})",
    ]
    prov = doc["provenance"]
    if prov["mixed_pairs"]:
        lines += ["", f"**Mixed code** (report.allow_mixed_code): {'; '.join(prov['mixed_pairs'])}."]
    header = ["variant", "n", "test/acc", "IQM", "min – max", "test/loss", "Δ test/acc [95% CI]", "verdict"]
    header += ["train time (s)", "epochs (s) to baseline val/acc", "images/s"]
    header += ["best epoch", "failed", "diverged"]
    rows = []
    for v in doc["variants"]:
        acc, c = v["metrics"]["test/acc"], comparison_of(doc, v["variant"], "test/acc")
        cost = v["cost"]
        rows.append(
            [
                v["variant"],
                v["n"],
                _pm(acc),
                fmt(acc["iqm"]),
                f"{fmt(acc['min'])} – {fmt(acc['max'])}" if acc["n"] else "—",
                _pm(v["metrics"]["test/loss"]),
                "baseline" if v["baseline"] else _interval(c),
                "baseline" if v["baseline"] else c["verdict"]["words"],
                fmt(cost["train_time_s"], 1),
                _reach(cost) if v["n"] else "—",
                fmt(cost["images_per_s"], 0),
                fmt(v["best_epoch"]),
                v["failed"],
                v["diverged"],
            ]
        )
    lines += ["", "## Variants", "", *_table(header, rows)]
    if doc["comparisons"]:
        header = ["variant", "metric", "paired seeds", "Δ mean [95% CI]", "permutation p"]
        header += ["t-test p [95% CI]", "P(improvement)", "Holm p (test)", "verdict", "min detectable Δ"]
        rows = []
        for c in doc["comparisons"]:
            t, ver = c["t_test"], c["verdict"]
            rows.append(
                [
                    c["variant"],
                    c["metric"] + ("" if c["higher_is_better"] else " (lower is better)"),
                    c["n"],
                    _interval(c),
                    fmt_p(c["p_perm"]) + ("" if c["p_perm_exact"] else " (sampled)"),
                    f"{fmt_p(t['p'])} [{fmt(t['ci_low'])}, {fmt(t['ci_high'])}]",
                    fmt(c["prob_improvement"], 2),
                    f"{fmt_p(ver['adjusted_p'])} ({ver['test_used']})",
                    ver["verdict"],
                    fmt(ver["min_detectable_diff"]),
                ]
            )
        lines += ["", f"## Paired comparisons with the baseline (`{base}`)", "", *_table(header, rows)]
        unpaired = [c for c in doc["comparisons"] if c["unpaired_jobs"] and c["metric"] == compared[0]]
        for c in unpaired:
            jobs = ", ".join(f"{u['side']} job {u['job']} ({u['status']})" for u in c["unpaired_jobs"])
            seeds = ", ".join(str(s) for s in c["unpaired_seeds"])
            lines.append(f"\nUnpaired in `{c['variant']}`: seed {seeds}, left out of its comparison: {jobs}.")
    lines += ["", "## Jobs", "", "| job | options | status | test/acc |", "| --- | --- | --- | --- |"]
    shown = [*doc["swept_keys"], *doc["seed_keys"]]
    for j in doc["jobs"]:
        status = j["status"] if j["status"] == "completed" else f"**{j['status'].upper()}**"
        acc = j["metrics"].get("test/acc") if j["status"] == "completed" else None
        options = " ".join(f"{k}={j['overrides'][k]}" for k in shown if k in j["overrides"])
        lines.append(f"| {j['job']} | `{options}` | {status} | {fmt(acc)} |")
    lines += ["", "![test accuracy per variant](accuracy.png)", "", "![validation curves](val_curves.png)"]
    lines += ["", "![paired differences with the baseline](paired_diff.png)", ""]
    return "\n".join(lines)


def write_all(sweep_dir: Path, doc: dict, log_wandb: bool = True) -> list[Path]:
    (sweep_dir / "report.json").write_text(json.dumps(clean(doc), indent=2) + "\n")
    columns, rows = csv_rows(doc)
    write_csv(sweep_dir / "report.csv", columns, rows)
    (sweep_dir / "report.md").write_text(markdown(doc))
    images = plot(sweep_dir, doc)
    if log_wandb:
        comparisons = [
            [c["variant"], c["metric"], c["n"], c["mean_diff"], c["ci_low"], c["ci_high"], c["p_perm"]]
            + [c["t_test"]["p"], *(c["verdict"][k] for k in ("adjusted_p", "test_used", "verdict"))]
            for c in doc["comparisons"]
        ]
        comparison_columns = ["variant", "metric", "paired seeds", "diff", "ci low", "ci high", "p perm"]
        comparison_columns += ["p t-test", "p holm", "test used", "verdict"]
        log_result(
            "report",
            doc["group"],
            sweep_dir,
            {"sweep_dir": str(sweep_dir), "baseline": doc["baseline"]["variant"], **doc["options"]},
            {
                "report": lambda wandb: wandb.Table(
                    columns=columns, data=[[r[c] for c in columns] for r in clean(rows)]
                ),
                "comparisons": lambda wandb: wandb.Table(columns=comparison_columns, data=clean(comparisons)),
                **{f"plots/{p.stem}": (lambda wandb, p=p: wandb.Image(str(p))) for p in images},
            },
            {"baseline": doc["baseline"]["variant"]},
            name=f"report_{sweep_dir.name}",
        )
    return images
