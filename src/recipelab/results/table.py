"""Every run under a folder in one table: one row per ``metrics.json`` (single runs, sweep jobs, from any
sweep), written as ``results.csv`` (and ``results.parquet`` where pyarrow is installed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from recipelab.errors import UserError
from recipelab.records.folder import RECORD

FRONT = ("run", "name", "group", "seed", "status", "overrides")
COST = ("train_time_s", "wall_time_s", "epochs", "steps")
PROVENANCE = ("git_commit", "git_dirty", "device")


def records(folder: Path) -> list[tuple[Path, dict]]:
    """(run folder, record) of every metrics.json under ``folder``, in path order."""
    found = []
    for path in sorted(folder.rglob(RECORD)):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):  # a record being written (atomic writes make this rare) or damaged
            continue
        if isinstance(record, dict):
            found.append((path.parent, record))
    return found


def row(folder: Path, run_dir: Path, record: dict) -> dict:
    """One run's row: identity, every group choice, every metric, cost and provenance, flattened."""
    prov = record.get("provenance") or {}
    out = {
        "run": str(run_dir.relative_to(folder)) if run_dir != folder else ".",
        "name": record.get("name"),
        "group": record.get("group"),
        "seed": record.get("seed"),
        "status": record.get("status"),
        "overrides": " ".join(record.get("overrides") or []),
    }
    out.update({g: choice for g, choice in sorted((record.get("groups") or {}).items())})
    out.update({m: value for m, value in sorted((record.get("metrics") or {}).items())})
    out.update({k: record.get(k) for k in COST})
    out.update({k: prov.get(k) for k in PROVENANCE})
    out.update({f"versions/{p}": v for p, v in sorted((prov.get("versions") or {}).items())})
    return out


def columns(found: list[tuple[Path, dict]]) -> list[str]:
    """Identity first, then group choices, metrics, cost and provenance: each kind in name order."""
    choices = sorted({g for _, r in found for g in r.get("groups") or {}})
    metrics = sorted({m for _, r in found for m in r.get("metrics") or {}})
    versions = sorted({p for _, r in found for p in (r.get("provenance") or {}).get("versions") or {}})
    return [*FRONT, *choices, *metrics, *COST, *PROVENANCE, *(f"versions/{p}" for p in versions)]


def write_table(folder) -> tuple[Path, int]:
    """Write ``folder/results.csv`` (and ``results.parquet`` with pyarrow); returns (csv path, rows)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"folder {folder} does not exist")
    found = records(folder)
    if not found:
        raise UserError(f"no {RECORD} under {folder}: no runs to tabulate")
    rows = [row(folder, run_dir, record) for run_dir, record in found]
    names = columns(found)
    path = folder / "results.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return path, len(rows)
    table = pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows])
    pq.write_table(table, folder / "results.parquet")
    return path, len(rows)
