"""The ablation report on a sweep folder laid out as Hydra and train.py write it (CSV histories, no W&B)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from recipelab.report import main, report

# (optimizer, seed, status, test/acc, test/loss, val/acc per epoch)
JOBS = [
    ("sgd", 1, "completed", 0.80, 0.60, [0.70, 0.78, 0.77]),
    ("sgd", 2, "completed", 0.82, 0.55, [0.72, 0.80, 0.81]),
    ("sgd", 3, "completed", 0.85, 0.50, [0.71, 0.79, 0.80]),
    ("adam", 1, "completed", 0.88, 0.40, [0.80, 0.86, 0.85]),
    ("adam", 2, "diverged", None, None, []),
    ("adam", 3, None, None, None, []),  # died before writing its record
]


def make_sweep(root):
    for num, (opt, seed, status, acc, loss, curve) in enumerate(JOBS):
        job = root / str(num)
        (job / ".hydra").mkdir(parents=True)
        overrides = ["trainer.max_epochs=3", f"optimizer={opt}", f"seed={seed}"]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if status:
            metrics = {"test/acc": acc, "test/loss": loss} if acc else {}
            record = {"status": status, "metrics": metrics, "wall_time_s": 10.0 + num, "seed": seed}
            (job / "metrics.json").write_text(json.dumps(record))
        (job / "csv").mkdir()
        with (job / "csv" / "metrics.csv").open("w") as f:
            f.write("epoch,step,train/loss,val/acc\n")
            for epoch, v in enumerate(curve):
                f.write(f"{epoch},{10 * epoch},0.5,\n{epoch},{10 * epoch},,{v}\n")
    return root


def test_one_row_per_variant_with_the_numbers_of_its_completed_jobs(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    report(sweep, use_wandb=False)
    with (sweep / "report.csv").open() as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"optimizer=sgd", "optimizer=adam"}  # the seed is not a variant

    sgd, adam = rows["optimizer=sgd"], rows["optimizer=adam"]
    accs, losses = np.array([0.80, 0.82, 0.85]), np.array([0.60, 0.55, 0.50])
    assert float(sgd["test/acc mean"]) == pytest.approx(accs.mean())
    assert float(sgd["test/acc std"]) == pytest.approx(accs.std(ddof=1))
    assert float(sgd["test/loss mean"]) == pytest.approx(losses.mean())
    assert float(sgd["test/loss std"]) == pytest.approx(losses.std(ddof=1))
    assert (sgd["n"], sgd["completed"], sgd["failed"], sgd["diverged"]) == ("3", "3", "0", "0")
    curve = np.mean([[0.70, 0.78, 0.77], [0.72, 0.80, 0.81], [0.71, 0.79, 0.80]], axis=0)
    assert sgd["best epoch"] == str(int(curve.argmax()))
    assert float(sgd["wall time s"]) == pytest.approx(11.0)

    assert (adam["n"], adam["completed"], adam["failed"], adam["diverged"]) == ("3", "1", "1", "1")
    assert float(adam["test/acc mean"]) == pytest.approx(0.88) and adam["best epoch"] == "1"


def test_markdown_marks_failed_and_diverged_jobs_and_the_plots_exist(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    report(sweep, use_wandb=False)
    md = (sweep / "report.md").read_text()
    accs = np.array([0.80, 0.82, 0.85])
    assert f"| optimizer=sgd | 3 | {accs.mean():.4f} ± {accs.std(ddof=1):.4f} |" in md
    assert "| 4 | `optimizer=adam seed=2` | **DIVERGED** | — |" in md
    assert "| 5 | `optimizer=adam seed=3` | **FAILED** | — |" in md
    for png in ("accuracy.png", "val_curves.png"):
        assert (sweep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_jobs_fails_with_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no sweep jobs" in err[0]
