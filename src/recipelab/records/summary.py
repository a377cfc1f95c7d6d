"""What an entry prints last: what it found and where it wrote it, in a few lines.

``train``: the status, the test scores of the tested checkpoint and its epoch, the time, the run folder
and the commands that fit next; a sweep: a table of its jobs and ``make report``; ``evaluate``,
``ensemble``, ``report``: their headline numbers and the files written. ``emit`` prints the lines and
writes them as the last lines of the run's log (``train.log``) where logging writes one. A run that did
not complete ends with its one ``error:`` line instead, a failed one with its traceback
(``recipelab.cli.error_boundary``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from recipelab.records.folder import is_run_dir
from recipelab.records.wandb_file import run_files

SCORES = {"acc": "acc", "nll": "NLL", "ece": "ECE", "brier": "Brier"}  # key → label, in this order
TIMES = {"train_time_s": "training", "wall_time_s": "in all"}


def emit(lines: list[str]) -> None:
    """Print ``lines``; also append them to every log file the root logger writes (Hydra's train.log)."""
    text = "\n".join(lines)
    print(text, flush=True)
    to_log_files(text)


def to_log_files(text: str, level: int = logging.INFO) -> None:
    """Append ``text`` to every log file the root logger writes (a run's train.log), not to the terminal."""
    record = logging.LogRecord(__name__, level, __file__, 0, text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def shown(path) -> str:
    """A path as one would type it here: relative to the working directory when it lies below it."""
    path, cwd = Path(path).absolute(), Path.cwd()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


def number(values: dict, key: str) -> str:
    value = values.get(key)
    return "-" if value is None else f"{value:.4f}"


def scores(values: dict, prefix: str = "", keys=tuple(SCORES)) -> str:
    """``acc 0.9353, NLL 0.2100, ...`` for the keys ``values`` holds under ``prefix``."""
    return ", ".join(f"{SCORES[k]} {values[prefix + k]:.4f}" for k in keys if prefix + k in values)


def scaled(values: dict, prefix: str) -> list[str]:
    """The scores after temperature scaling (``temperature``, ``<prefix>ts/*``), if it was done."""
    if "temperature" not in values:
        return []
    return [f"temperature-scaled (T={values['temperature']:.4f}): {scores(values, prefix + 'ts/')}"]


def wrote(folder, files: list[str]) -> str:
    return f"wrote {', '.join(files) or 'nothing'} in {shown(folder)}"


def written(folder, since: float) -> list[str]:
    """The files directly in ``folder`` modified since ``since`` (a ``time.time()``), by name."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.stat().st_mtime >= since)


def train_lines(record: dict) -> list[str]:
    """A completed run's record (metrics.json): status, test scores, tested epoch, time, folder, next."""
    run_dir, tested = Path(record["run_dir"]), record.get("best_checkpoint")
    line = f"{record['status']}: test {scores(record['metrics'], 'test/', ('acc', 'nll', 'ece'))}"
    if tested:
        path, epoch = Path(tested), record.get("tested_epoch")
        name = path.relative_to(run_dir) if path.is_relative_to(run_dir) else path
        if path.name.startswith("best") and epoch is not None:
            name = f"best epoch {epoch} of {record.get('epochs')}, counted from 0: {name}"
        line += f" ({name})"
    times = [f"{record[k]:.1f} s {what}" for k, what in TIMES.items() if record.get(k) is not None]
    lines = [line, f"time: {', '.join(times) or '-'}", f"run folder: {shown(run_dir)}"]
    commands = []
    if is_run_dir(run_dir):
        commands.append(f"make evaluate CKPT={shown(run_dir)}    # test it again, with temperature scaling")
    if run_files(run_dir):
        commands.append("make sync    # upload the offline W&B run (needs internet and `wandb login`)")
    return lines + [f"{'next:' if i == 0 else '':<6}{c}" for i, c in enumerate(commands)]


def sweep_lines(sweep_dir, records: dict[str, dict], counts: dict[str, int]) -> list[str]:
    """The end of a sweep: its counts, a table of its jobs (status, test acc, the overrides that vary
    between jobs) and ``make report`` when a job completed."""
    overrides = {name: r.get("overrides") or r.get("asked") or [] for name, r in records.items()}
    common = set.intersection(*(set(o) for o in overrides.values())) if overrides else set()
    rows = [("job", "status", "test acc", "overrides")] + [
        (
            name,
            r["status"],
            number(r.get("metrics") or {}, "test/acc"),
            " ".join(o for o in overrides[name] if o not in common),
        )
        for name, r in records.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    table = ["  ".join(["", *map(str.ljust, row, widths), row[3]]).rstrip() for row in rows]
    counted = ", ".join(f"{n} {status}" for status, n in counts.items())
    report = [f"next: make report SWEEP={shown(sweep_dir)}"] if counts.get("completed") else []
    return [f"sweep {shown(sweep_dir)}: {len(records)} jobs, {counted}", *table, *report]


def evaluate_lines(result: dict, files: list[str]) -> list[str]:
    """A checkpoint tested again (evaluate.json): its scores on the split, before and after scaling."""
    split, metrics, prefix = result["split"], result["metrics"], f"{result['split']}/"
    views = f"tta_flip={result['tta_flip']}, tta_shift={result['tta_shift']}"
    lines = [f"{shown(result['checkpoint'])} on {split} ({views}):", f"{split} {scores(metrics, prefix)}"]
    lines += scaled(metrics, prefix)
    if result.get("temperature_note"):
        lines.append(result["temperature_note"])
    return [*lines, wrote(result["out_dir"], files)]


def ensemble_lines(result: dict, files: list[str]) -> list[str]:
    """An ensemble's test scores (ensemble.json), its gain over its best member, and its files."""
    ensemble = result["ensemble"]
    head = f"ensemble of {result['n_members']} members ({result['combine']}): test {scores(ensemble)}"
    gain = f"{result['gain_over_best_member']:+.4f} acc over the best member"
    lines = [f"{head}; {gain}", *scaled(ensemble, "")]
    if result.get("temperature_note"):
        lines.append(result["temperature_note"])
    return [*lines, wrote(result["out_dir"], files)]


def report_lines(doc: dict, folder, files: list[str], seconds: float) -> list[str]:
    """A sweep's report (report.json): each variant's completed seeds and mean test accuracy, its
    difference to the baseline and verdict, the claim's words, the files. Keys it lacks are left out."""
    baseline = (doc.get("baseline") or {}).get("variant")
    variants = doc.get("variants") or []
    compared = {c.get("variant"): c for c in doc.get("comparisons") or [] if c.get("metric") == "test/acc"}
    width = max((len(str(v.get("variant"))) for v in variants), default=0)
    lines = [f"report: {len(variants)} variant{'' if len(variants) == 1 else 's'}, baseline {baseline}"]
    for variant in variants:
        name = variant.get("variant")
        acc = (variant.get("metrics") or {}).get("test/acc") or {}
        line = f"  {str(name):<{width}}  n={acc.get('n', 0)}  test acc {number(acc, 'mean')}"
        comparison = compared.get(name) or {}
        if name == baseline:
            line += "  baseline"
        elif comparison.get("mean_diff") is not None:
            verdict = (comparison.get("verdict") or {}).get("verdict")
            line += f"  {comparison['mean_diff']:+.4f} to the baseline" + (f": {verdict}" if verdict else "")
        lines.append(line)
    if (doc.get("claim") or {}).get("words"):
        lines.append(f"claim: {doc['claim']['words']}")
    return [*lines, f"{wrote(folder, files)} ({seconds:.1f} s)"]
