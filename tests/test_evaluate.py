"""python -m recipelab.evaluate: one checkpoint tested again, rebuilt from its own stored config."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recipelab.records.wandb_file import read_run, run_files
from tests.conftest import ROOT, printed_numbers, train_cli


def evaluate_cli(*overrides):
    cmd = [sys.executable, "-m", "recipelab.evaluate", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory):
    """A one-epoch run trained and tested in fp32, as evaluate tests: a bf16 test of a one-epoch network
    differs from an fp32 one by more than the tolerance below on CPUs without native bf16 (seen: AMD EPYC,
    0.4642 vs 0.4616), so that comparison would measure the precision, not evaluate."""
    run = train_cli(tmp_path_factory.mktemp("fp32_run"), "trainer.precision=32-true")
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    return run


def test_evaluate_equals_the_test_of_training(fp32_run, tmp_path):
    one_epoch_run = fp32_run
    # a copy: the evaluation's W&B run lands in the run folder, which other tests read as it was trained
    run_dir = shutil.copytree(one_epoch_run.run_dir, tmp_path / "run")
    before = len(run_files(run_dir))
    proc = evaluate_cli(f"ckpt_path={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = one_epoch_run.metrics()
    result = json.loads((run_dir / "evaluate.json").read_text())
    tested = run_dir / Path(trained["best_checkpoint"]).relative_to(one_epoch_run.run_dir)
    assert result["checkpoint"] == str(tested)  # a run folder: the checkpoint it tested
    for key, tolerance in (("test/acc", 1e-3), ("test/nll", 5e-3), ("test/ece", 5e-3)):
        assert result["metrics"][key] == pytest.approx(trained["metrics"][key], abs=tolerance), key
    # temperature scaling (on by default): scores after it, the same accuracy
    assert result["metrics"]["test/ts/acc"] == result["metrics"]["test/acc"]
    # it ends with the scores of evaluate.json, before and after scaling, and the file it wrote
    where, plain, after, wrote = proc.stdout.splitlines()[-4:]
    m = {k.removeprefix("test/"): v for k, v in result["metrics"].items()}
    assert where == f"{tested} on test (tta_flip={result['tta_flip']}, tta_shift={result['tta_shift']}):"
    scores = {"acc": m["acc"], "NLL": m["nll"], "ECE": m["ece"], "Brier": m["brier"]}
    assert plain.startswith("test acc ") and printed_numbers(plain) == pytest.approx(scores, abs=5e-5)
    scaled = {"T": m["temperature"], "acc": m["ts/acc"], "NLL": m["ts/nll"], "ECE": m["ts/ece"]}
    assert printed_numbers(after) == pytest.approx({**scaled, "Brier": m["ts/brier"]}, abs=5e-5)
    assert wrote == f"wrote evaluate.json in {run_dir}"
    # its own W&B run, job_type=evaluate, in the run's group
    (new,) = run_files(run_dir)[before:] if len(run_files(run_dir)) > before else [None]
    assert new is not None
    logged = read_run(new)
    assert logged.job_type == "evaluate" and logged.group == trained["group"]
    assert logged.summary["test/acc"] == pytest.approx(result["metrics"]["test/acc"])
    assert logged.summary["test/ts/nll"] == pytest.approx(result["metrics"]["test/ts/nll"])


def test_evaluate_a_missing_checkpoint_is_one_line(tmp_path):
    proc = evaluate_cli(f"ckpt_path={tmp_path / 'nothing.ckpt'}", "log_wandb=false")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: checkpoint {tmp_path / 'nothing.ckpt'}: no such file"
    ]


@pytest.mark.slow
def test_a_swa_run_records_the_validation_of_the_average_it_tests(tmp_path):
    """Without batch norm SWA puts the average in after the last validation, at the same step: the record's
    val metrics are those of swa.ckpt (evaluate on the val split), not the last training weights'."""
    plain = ("trainer.precision=32-true", "model=mlp", "normalization=none", "optimizer.lr=0.05")
    run = train_cli(tmp_path, *plain, "callbacks=swa", "trainer.max_epochs=4")  # averaged: epochs 3, 4
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    record = run.metrics()
    assert Path(record["best_checkpoint"]).name == "swa.ckpt"
    assert record["metrics"]["val/loss"] != record["metrics"]["last_val/loss"]  # the two weights differ
    proc = evaluate_cli(
        f"ckpt_path={record['best_checkpoint']}", "split=val", "tta_flip=false", "log_wandb=false"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run.run_dir / "evaluate.json").read_text())
    assert result["metrics"]["val/acc"] > 0.5  # trained: a network at chance ties its logits
    for key, recorded in (("acc", "acc"), ("nll", "loss")):
        assert result["metrics"][f"val/{key}"] == pytest.approx(
            record["metrics"][f"val/{recorded}"], abs=1e-5
        )


def test_a_swa_run_with_batch_norm_records_the_epochs_it_trained(tmp_path):
    """With batch norm, Lightning's SWA adds an epoch of forward passes after the last (the average's
    statistics, then its validation) and steps no optimizer in it: the record counts the epochs trained, as
    the steps do (the report's images/s divide by them), and tests the average as of the last of them."""
    small = ("model=mlp", "data.train_size=600", "data.batch_size=100", "trainer.max_epochs=3")
    run = train_cli(tmp_path, "trainer.precision=32-true", "callbacks=swa", *small)
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    record = run.metrics()
    assert record["steps"] == 3 * 600 // 100  # trainer.max_epochs epochs of optimizer steps
    assert (record["epochs"], record["tested_epoch"]) == (record["steps"] // 6, 2)
    assert [row["epoch"] for row in record["history"]] == [0, 1, 2, 3]  # 3: the average's validation
