"""Every run under a folder in one table: one row per metrics.json, from single runs and sweeps alike."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys

import pytest

from recipelab.results.__main__ import main


def record(i: int, optimizer: str, **extra) -> dict:
    return {
        "name": f"run{i}",
        "group": "g1" if i < 2 else "g2",
        "seed": i,
        "status": "completed",
        "groups": {"optimizer": optimizer, "model": "cnn"},
        "overrides": [f"optimizer={optimizer}", f"seed={i}"],
        "metrics": {"test/acc": 0.5 + i / 10, "val/acc": 0.4 + i / 10},
        "train_time_s": 1.5 * i,
        "wall_time_s": 2.0 * i,
        "epochs": 3,
        "steps": 30 + i,
        **extra,
    }


@pytest.fixture
def logs(tmp_path):
    folders = [
        "runs/2025-01-01/00-00-00_a",
        "multiruns/2025-01-02/00-00-00_b/0",
        "multiruns/2025-01-02/00-00-00_b/1",
    ]
    prov = {"git_commit": "abc", "git_dirty": True, "device": "cpu", "versions": {"torch": "2.0"}}
    records = [
        record(0, "sgd"),
        record(1, "adam", provenance=prov),
        record(2, "adam", status="diverged", metrics={"test/nll": 1.5}),
    ]
    for folder, rec in zip(folders, records, strict=True):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "metrics.json").write_text(json.dumps(rec))
    (tmp_path / "multiruns/2025-01-02/00-00-00_b/sweep.json").write_text("{}")  # not a run record
    (tmp_path / "multiruns/2025-01-02/00-00-00_b/2").mkdir()  # a job that never wrote one
    return tmp_path, dict(zip(folders, records, strict=True))


def test_one_row_per_record_with_choices_metrics_cost_and_provenance(logs, capsys):
    folder, records = logs
    main([str(folder)])
    assert capsys.readouterr().out.strip() == f"3 runs: {folder / 'results.csv'}"
    with (folder / "results.csv").open() as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(records)  # one row per metrics.json, keyed by its folder under `folder`
    for run, rec in records.items():
        row = rows[run]
        assert (row["name"], row["group"], row["seed"], row["status"]) == (
            rec["name"],
            rec["group"],
            str(rec["seed"]),
            rec["status"],
        )
        assert row["optimizer"] == rec["groups"]["optimizer"] and row["model"] == "cnn"  # group choices
        assert row["overrides"] == " ".join(rec["overrides"])
        for metric in ("test/acc", "val/acc", "test/nll"):
            value = rec["metrics"].get(metric)
            assert row[metric] == ("" if value is None else str(value))
        assert row["train_time_s"] == str(rec["train_time_s"]) and row["steps"] == str(rec["steps"])
    b0 = rows["multiruns/2025-01-02/00-00-00_b/0"]
    assert (b0["git_commit"], b0["git_dirty"], b0["device"], b0["versions/torch"]) == (
        "abc",
        "True",
        "cpu",
        "2.0",
    )
    assert rows["runs/2025-01-01/00-00-00_a"]["git_commit"] == ""  # an older record without provenance
    parquet = (folder / "results.parquet").exists()
    assert parquet == (importlib.util.find_spec("pyarrow") is not None)


def test_a_folder_without_records_fails_with_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "no metrics.json under" in err[0]


def test_the_module_runs_as_the_make_target_calls_it(logs):
    folder, records = logs
    proc = subprocess.run(
        [sys.executable, "-m", "recipelab.results", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("3 runs: ")
    with (folder / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(records)
