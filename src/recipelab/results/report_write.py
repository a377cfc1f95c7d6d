"""The report's files: report.json (everything, NaN as null, every job's per-seed values), report.csv (one
row per variant), report.md (``report_markdown``), the plots, and the W&B report run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from recipelab.results.report_compare import comparison_of
from recipelab.results.report_markdown import markdown
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
COMPARISON_COLUMNS = ("paired seeds", "diff", "diff ci low", "diff ci high", "diff ci method", "p perm")
COMPARISON_COLUMNS += ("p t-test", "improved seeds", "improved share", "improved ci low", "improved ci high")
COMPARISON_COLUMNS += ("prob improvement unpaired",)
VERDICT_COLUMNS = (
    "p holm",
    "family",
    "test used",
    "verdict",
    "min detectable diff",
    "seeds for observed diff",
)


def clean(x):
    """JSON-safe: NaN and infinities become null, tuples lists."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    return x


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
                ver, imp = c["verdict"], c["paired_improvement"]
                values = (c["n"], c["mean_diff"], c["ci_low"], c["ci_high"], c["ci_method"], c["p_perm"])
                values += (c["t_test"]["p"], imp["improved"], imp["share"], imp["ci_low"], imp["ci_high"])
                values += (c["prob_improvement_unpaired"],)
                row.update({f"{m} {k}": x for k, x in zip(COMPARISON_COLUMNS, values, strict=True)})
                values = tuple(ver[k] for k in ("adjusted_p", "family", "test_used", "verdict"))
                values += (ver["min_detectable_diff"], ver["seeds_for_observed"])
                row.update({f"{m} {k}": x for k, x in zip(VERDICT_COLUMNS, values, strict=True)})
        rows.append({k: row.get(k) for k in columns})
    return columns, rows


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(clean(rows))


def write_all(sweep_dir: Path, doc: dict, log_wandb: bool = True) -> list[Path]:
    (sweep_dir / "report.json").write_text(json.dumps(clean(doc), indent=2) + "\n")
    columns, rows = csv_rows(doc)
    write_csv(sweep_dir / "report.csv", columns, rows)
    (sweep_dir / "report.md").write_text(markdown(doc))
    images = plot(sweep_dir, doc)
    if log_wandb:
        comparisons = [
            [c["variant"], c["metric"], c["n"], c["mean_diff"], c["ci_low"], c["ci_high"], c["ci_method"]]
            + [c["p_perm"], c["t_test"]["p"], c["paired_improvement"]["share"]]
            + [c["verdict"][k] for k in ("adjusted_p", "test_used", "verdict")]
            for c in doc["comparisons"]
        ]
        comparison_columns = ["variant", "metric", "paired seeds", "diff", "ci low", "ci high", "ci method"]
        comparison_columns += ["p perm", "p t-test", "improved share", "p holm", "test used", "verdict"]
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
