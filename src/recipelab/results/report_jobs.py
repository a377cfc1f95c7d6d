"""A sweep's jobs as the report reads them: each job's record (``metrics.json``), overrides, stored config
and validation history; the swept keys that make a variant; the seed (and k-fold fold) that pairs jobs
across variants; and the code each job ran (its provenance)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recipelab.errors import UserError
from recipelab.records.folder import job_dirs, read_evaluation, read_history, read_overrides, read_record

SEED_KEYS = ("seed", "data.fold")  # what varies between a variant's repeats: a k-fold fold counts as a seed


@dataclass
class Job:
    folder: Path
    overrides: dict[str, str]
    record: dict
    config: dict = field(default_factory=dict)  # .hydra/config.yaml as stored (interpolations unresolved)
    history: list[dict] = field(default_factory=list)  # one row per validation: epoch, val/acc, ...
    evaluated: dict = field(default_factory=dict)  # evaluate.json's metrics, if the job was evaluated

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def status(self) -> str:
        return self.record.get("status", "failed")  # no record: the job died before writing one

    @property
    def metrics(self) -> dict:
        """metrics.json's values, then what ``recipelab.evaluate`` wrote beside it (``evaluate.json``;
        ``split=train`` gives ``train/acc``, and with the run's ``test/acc`` the gap ``train_test/gap``)."""
        metrics = {**self.evaluated, **self.record.get("metrics", {})}
        if "train/acc" in metrics and "test/acc" in metrics:
            metrics["train_test/gap"] = metrics["train/acc"] - metrics["test/acc"]
        return metrics

    def metric(self, name: str) -> float | None:
        """A completed job's finite value of ``name``, else None."""
        value = self.metrics.get(name) if self.status == "completed" else None
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    @property
    def pair_key(self):
        """What pairs this job with another variant's: its seed, and its fold under k-fold."""
        seed = self.record.get("seed", _value(self.overrides.get("seed", self.config.get("seed"))))
        fold = _value(self.overrides.get("data.fold", (self.config.get("data") or {}).get("fold")))
        return seed if fold is None else f"seed={seed} fold={fold}"

    @property
    def code(self) -> tuple | None:
        """(git commit, dirty) of the code the job ran; None for records without provenance."""
        prov = self.record.get("provenance")
        return (prov.get("git_commit"), prov.get("git_dirty")) if isinstance(prov, dict) else None

    def train_images(self) -> int | None:
        """Training images per epoch, as the DataModule splits them (k-fold, val_size, train_size)."""
        data = self.config.get("data") or {}
        count, size = data.get("train_count"), data.get("train_size")
        folds, val = data.get("folds"), data.get("val_size")
        n = None
        if isinstance(count, int) and (isinstance(folds, int) or isinstance(val, int)):
            n = count - (count // folds if isinstance(folds, int) and folds else val)
        if isinstance(size, int) and size > 0:
            n = size if n is None else min(n, size)
        return n


def _value(text):
    """An override's value as YAML reads it (``1`` → 1); None stays None."""
    if text is None or not isinstance(text, str):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _history(folder: Path, record: dict) -> list[dict]:
    """The validation rows of metrics.json; an older run without them: its W&B or CSV log. Where the rows
    stop before the run's last step (a record cut short), the log's rows, if it holds more."""
    rows = record.get("history")
    if rows is None:
        return read_history(folder)
    rows = [r for r in rows if "val/acc" in r and "epoch" in r]
    steps = record.get("steps")
    if rows and isinstance(steps, int) and rows[-1].get("step", steps) < steps:
        logged = read_history(folder)
        if len(logged) > len(rows):
            return logged
    return rows


def _config(folder: Path) -> dict:
    path = folder / ".hydra" / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def load_jobs(sweep_dir: Path) -> list[Job]:
    jobs = []
    for folder in job_dirs(sweep_dir):
        record = read_record(folder) or {}
        history, evaluated = _history(folder, record), read_evaluation(folder)
        jobs.append(Job(folder, read_overrides(folder), record, _config(folder), history, evaluated))
    if not jobs:
        raise UserError(f"{sweep_dir}: no sweep jobs found (job folders hold .hydra/); pass a sweep folder")
    return jobs


def swept_keys(jobs: list[Job]) -> list[str]:
    """The overrides whose value differs between jobs, seed and fold left out: what makes a variant."""
    keys = sorted({k for j in jobs for k in j.overrides})
    varying = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    return [k for k in varying if k.lstrip("+~") not in SEED_KEYS]


def variants(jobs: list[Job]) -> dict[str, list[Job]]:
    """Variant name (``key=value, ...`` of the swept keys) → its jobs, in the order the sweep ran them."""
    keys = swept_keys(jobs)
    groups: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        groups[", ".join(f"{k}={job.overrides.get(k, '-')}" for k in keys) or "all jobs"].append(job)
    for name, members in groups.items():
        seen: dict = {}
        for job in members:
            if job.pair_key in seen:
                raise UserError(
                    f"variant {name}: jobs {seen[job.pair_key]} and {job.name} both ran seed {job.pair_key}; "
                    "a report pairs one job per seed"
                )
            seen[job.pair_key] = job.name
    return dict(groups)


def sweep_group(jobs: list[Job], sweep_dir: Path) -> str:
    """The sweep's W&B group, as its jobs recorded it (else as the sweep folder names it)."""
    from recipelab.records import tracking

    return next((j.record["group"] for j in jobs if "group" in j.record), tracking.sweep_group(sweep_dir))


def mixed_code(pairs: list[tuple[Job, Job]]) -> list[str]:
    """The pairs (baseline job, variant job) whose jobs ran different code, as one phrase each."""
    return [
        f"{b.name} ({_code(b.code)}) with {v.name} ({_code(v.code)})"
        for b, v in pairs
        if b.code is not None and v.code is not None and b.code != v.code
    ]


def _code(code: tuple) -> str:
    commit, dirty = code
    return f"{(commit or 'no commit')[:10]}{' dirty' if dirty else ''}"


def provenance(jobs: list[Job]) -> dict:
    """Which code ran which jobs (report.json's ``provenance``)."""
    codes: dict[tuple, list[str]] = defaultdict(list)
    for job in jobs:
        if job.code is not None:
            codes[job.code].append(job.name)
    return {
        "codes": [{"git_commit": c, "git_dirty": d, "jobs": names} for (c, d), names in codes.items()],
        "mixed": len(codes) > 1,
        "without_provenance": [j.name for j in jobs if j.code is None],
        "devices": sorted({str(j.record["provenance"].get("device")) for j in jobs if j.code is not None}),
    }
