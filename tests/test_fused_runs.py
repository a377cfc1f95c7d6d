"""Seeds trained fused (``seeds_per_process``) leave what separate runs leave, through the real command
line: a fused sweep's job folders and report against the same sweep run job by job, and a fused chunk
stopped by a signal and resumed against the same chunk never stopped."""

import csv
import json
import signal
from pathlib import Path

import pytest
import torch

from recipelab.records.wandb_file import read_run, run_files
from recipelab.report import ReportOptions, report
from recipelab.results.table import write_table
from tests.conftest import train_cli
from tests.test_ensemble import ensemble_cli
from tests.test_evaluate import evaluate_cli
from tests.test_resume import EXACT

# fp32, no dropout: the fused copies run the separate runs' operations, so their numbers agree
SMALL = [
    "trainer=quiet",
    "trainer.precision=32-true",
    "model=mlp",
    "data.train_size=600",
    "data.val_size=200",
    "data.batch_size=100",
    "trainer.max_epochs=2",
    "logger=csv",
]
AXES = ["regularization=none,label_smoothing", "seed=1,2,3"]


def sweep(tmp_path, name, *extra):
    folder = tmp_path / name
    run = train_cli(tmp_path / "logs", "-m", *SMALL, *AXES, *extra, f"hydra.sweep.dir={folder}", quick=False)
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    return folder


@pytest.mark.slow
def test_a_fused_sweep_leaves_the_job_folders_and_report_of_the_same_sweep_run_job_by_job(tmp_path):
    plain = sweep(tmp_path, "plain")
    fused = sweep(tmp_path, "fused", "seeds_per_process=2")
    # seeds 1, 2 of each variant in one chunk, seed 3 alone (an ordinary job), in the jobs' own folders
    assert sorted(p.name for p in (fused / "chunks").iterdir()) == ["0", "3"]
    for job in range(6):
        a = json.loads((plain / str(job) / "metrics.json").read_text())
        b = json.loads((fused / str(job) / "metrics.json").read_text())
        assert [b[k] for k in ("status", "overrides", "tested_epoch")] == [
            a[k] for k in ("status", "overrides", "tested_epoch")
        ]
        assert b["metrics"].keys() == a["metrics"].keys()
        for key, value in a["metrics"].items():
            assert b["metrics"][key] == pytest.approx(value, abs=1e-3), (job, key)
        assert ("seeds_per_process" in b) == (job % 3 != 2)
    a, b = (report(folder, ReportOptions(wandb=False)) for folder in (plain, fused))
    assert [(v["variant"], v["n"], v["jobs"]) for v in b["variants"]] == [
        (v["variant"], v["n"], v["jobs"]) for v in a["variants"]
    ]
    for x, y in zip(a["comparisons"], b["comparisons"], strict=True):
        assert [y[k] for k in ("variant", "paired_seeds", "verdict")] == [
            x[k] for k in ("variant", "paired_seeds", "verdict")
        ]
        assert y["mean_diff"] == pytest.approx(x["mean_diff"], abs=1e-3)
    # results: one row a job, the fused sweep's as the plain one's (its chunks' folders are not runs)
    rows = {f: {r["run"]: r for r in csv.DictReader(write_table(f)[0].open())} for f in (plain, fused)}
    assert rows[plain].keys() == rows[fused].keys() == {str(job) for job in range(6)}
    for job, row in rows[fused].items():
        assert (row["seed"], row["status"]) == (rows[plain][job]["seed"], rows[plain][job]["status"])
        assert float(row["test/acc"]) == pytest.approx(float(rows[plain][job]["test/acc"]), abs=1e-3)
    # evaluate reads a fused seed's folder as any run's: its best checkpoint, the same test accuracy
    proc = evaluate_cli(f"ckpt_path={fused / '1'}", "log_wandb=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((fused / "1" / "evaluate.json").read_text())
    record = json.loads((fused / "1" / "metrics.json").read_text())
    assert evaluated["checkpoint"] == record["best_checkpoint"]
    assert evaluated["metrics"]["test/acc"] == pytest.approx(record["metrics"]["test/acc"], abs=1e-3)
    # a re-run of the fused sweep finds every seed done, fused or not
    again = train_cli(tmp_path / "logs", "-m", *SMALL, *AXES, f"hydra.sweep.dir={fused}", quick=False)
    assert again.proc.stdout.count("in an earlier run of this sweep, skipped") == 6


def _copies(folder):
    return {p.parent.name: p.parent for p in folder.rglob("seed_*/metrics.json")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGTERM"])
def test_a_fused_chunk_stopped_by_a_signal_resumes_exactly(tmp_path, name):
    chunk = [*EXACT, "seeds_per_process=2", "seed=7"]
    straight = train_cli(tmp_path / "straight", *chunk)
    assert straight.proc.returncode == 0, straight.proc.stderr[-3000:]
    sig = [
        "+callbacks.sig._target_=tests.helpers.SignalAtStep",
        "+callbacks.sig.step=9",
        f"+callbacks.sig.signal={name}",
    ]
    stopped = train_cli(tmp_path / "stopped", *chunk, *sig)
    assert stopped.proc.returncode == 128 + getattr(signal, name), stopped.proc.stderr[-3000:]
    copies = _copies(tmp_path / "stopped")
    assert sorted(copies) == ["seed_7", "seed_8"]
    for folder in copies.values():  # every copy saved at the same step, each job interrupted
        record = json.loads((folder / "metrics.json").read_text())
        assert record["status"] == "interrupted" and record["interrupted"]["step"] == 10
    chunk_dir = next(copies.values().__iter__()).parent
    assert torch.load(chunk_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10

    resumed = train_cli(tmp_path / "stopped", f"resume={chunk_dir}", "~callbacks.sig", quick=False)
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
    expected = _copies(tmp_path / "straight")
    for seed, folder in copies.items():
        a = json.loads((expected[seed] / "metrics.json").read_text())
        b = json.loads((folder / "metrics.json").read_text())
        assert b["status"] == "completed" and b["metrics"] == a["metrics"]  # bit for bit
        wa = torch.load(expected[seed] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        wb = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        # its own W&B run, continued by the resumed chunk: two offline folders, one id, the record's numbers
        assert len({p.name.rsplit("-", 1)[1] for p in folder.glob("wandb/offline-run-*")}) == 1
        summary = read_run(run_files(folder)[-1]).summary
        assert summary["status"] == "completed" and summary["test/acc"] == b["metrics"]["test/acc"]


@pytest.mark.slow
@pytest.mark.parametrize("averaging", ["callbacks=ema callbacks.ema.start_epoch=0", "callbacks=swa"])
def test_a_fused_chunk_with_weight_averaging_tests_each_copys_own_average(averaging, tmp_path):
    """EMA and SWA on the stacked tensors are each copy's own average: each seed's tested checkpoint holds
    its averaged weights (SWA: its batch-norm statistics recomputed from its own batches, swa.ckpt) and
    tests as the separate run does (fp32, no dropout: the same numbers)."""
    averaged = [*SMALL, *averaging.split()]
    fused = train_cli(tmp_path / "fused", *averaged, "seeds_per_process=2", "seed=1", quick=False)
    assert fused.proc.returncode == 0, fused.proc.stderr[-3000:]
    copies = _copies(tmp_path / "fused")
    for seed in (1, 2):
        alone = train_cli(tmp_path / f"alone{seed}", *averaged, f"seed={seed}", quick=False)
        assert alone.proc.returncode == 0, alone.proc.stderr[-3000:]
        a, b = alone.metrics(), json.loads((copies[f"seed_{seed}"] / "metrics.json").read_text())
        assert b["tested_epoch"] == a["tested_epoch"]
        assert Path(b["best_checkpoint"]).name == Path(a["best_checkpoint"]).name
        for key, value in a["metrics"].items():
            assert b["metrics"][key] == pytest.approx(value, abs=1e-5), key
        best_a = torch.load(a["best_checkpoint"], weights_only=True)["state_dict"]
        best_b = torch.load(b["best_checkpoint"], weights_only=True)["state_dict"]
        assert all(torch.allclose(best_b[k].float(), best_a[k].float(), atol=1e-6) for k in best_a)


@pytest.mark.slow
def test_a_fused_chunk_stops_each_copy_early_where_its_separate_run_stops(tmp_path):
    """Early stopping per copy: seed 2 stops after epoch 4, seed 1 after 7 (patience 1 on val/acc); each
    seed's record, history and best checkpoint are its separate run's (fp32, no dropout: the same numbers),
    so the copy that stopped first was frozen, not only left out of the loss."""
    stopping = [
        *SMALL,
        "trainer.max_epochs=8",
        "+callbacks.early._target_=lightning.pytorch.callbacks.EarlyStopping",
        "+callbacks.early.monitor=val/acc",
        "+callbacks.early.mode=max",
        "+callbacks.early.patience=1",
    ]
    fused = train_cli(tmp_path / "fused", *stopping, "seeds_per_process=2", "seed=1", quick=False)
    assert fused.proc.returncode == 0, fused.proc.stderr[-3000:]
    copies = _copies(tmp_path / "fused")
    epochs = []
    for seed in (1, 2):
        alone = train_cli(tmp_path / f"alone{seed}", *stopping, f"seed={seed}", quick=False)
        assert alone.proc.returncode == 0, alone.proc.stderr[-3000:]
        a, b = alone.metrics(), json.loads((copies[f"seed_{seed}"] / "metrics.json").read_text())
        assert [b[k] for k in ("epochs", "steps", "tested_epoch")] == [
            a[k] for k in ("epochs", "steps", "tested_epoch")
        ]
        assert [r["step"] for r in b["history"]] == [r["step"] for r in a["history"]]
        for key, value in a["metrics"].items():
            assert b["metrics"][key] == pytest.approx(value, abs=1e-5), key
        for name in ("best_checkpoint", "last"):
            path_a = (
                a["best_checkpoint"] if name == "best_checkpoint" else alone.run_dir / "checkpoints/last.ckpt"
            )
            path_b = (
                b["best_checkpoint"]
                if name == "best_checkpoint"
                else copies[f"seed_{seed}"] / "checkpoints/last.ckpt"
            )
            state_a = torch.load(path_a, weights_only=True)["state_dict"]
            state_b = torch.load(path_b, weights_only=True)["state_dict"]
            assert all(torch.allclose(state_b[k].float(), state_a[k].float(), atol=1e-6) for k in state_a), (
                name
            )
        epochs.append(a["epochs"])
    assert epochs == [7, 4]  # the copies stopped at different epochs
    # stopped by SIGTERM after seed 2 stopped (step 24), resumed: seed 2 stays frozen, bit for bit
    sig = [
        "+callbacks.sig._target_=tests.helpers.SignalAtStep",
        "+callbacks.sig.step=29",
        "+callbacks.sig.signal=SIGTERM",
    ]
    cut = train_cli(tmp_path / "cut", *stopping, *sig, "seeds_per_process=2", "seed=1", quick=False)
    assert cut.proc.returncode == 128 + signal.SIGTERM, cut.proc.stderr[-3000:]
    chunk_dir = _copies(tmp_path / "cut")["seed_1"].parent
    resumed = train_cli(tmp_path / "cut", f"resume={chunk_dir}", "~callbacks.sig", quick=False)
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
    for seed, folder in _copies(tmp_path / "cut").items():
        a, b = (json.loads((f / "metrics.json").read_text()) for f in (copies[seed], folder))
        assert (b["epochs"], b["steps"], b["metrics"]) == (a["epochs"], a["steps"], a["metrics"]), seed


@pytest.mark.slow
def test_a_diverged_copy_is_recorded_as_its_separate_run_records_it(tmp_path):
    nan = [
        "+callbacks.nan._target_=tests.helpers.NanAtStep",
        "+callbacks.nan.step=7",
        "+callbacks.nan.at_seed=2",
    ]
    nan.append("+callbacks.nan.run_seed=${seed}")
    fused = train_cli(tmp_path / "fused", *SMALL, *nan, "seeds_per_process=2", "seed=1", quick=False)
    assert fused.proc.returncode == 0, fused.proc.stderr[-3000:]  # seed 1 completed
    alone = train_cli(tmp_path / "alone", *SMALL, *nan, "seed=2", quick=False)
    assert alone.proc.returncode == 3, alone.proc.stderr[-3000:]
    a = alone.metrics()
    b = json.loads((_copies(tmp_path / "fused")["seed_2"] / "metrics.json").read_text())
    for key in ("status", "diverged", "epochs", "steps", "metrics"):
        assert b[key] == a[key], key
    assert [r["step"] for r in b["history"]] == [r["step"] for r in a["history"]]


@pytest.mark.slow
def test_a_fused_chunk_keeps_each_copys_time_point_members(tmp_path):
    """``callbacks=time_points``: each seed's folder holds its members, named and weighted as its separate
    run's (fp32, no dropout: the same numbers), and the ensemble entry takes the seed's folder as a source."""
    points = [*SMALL, "callbacks=time_points", "callbacks.members.every_n_epochs=1"]
    fused = train_cli(tmp_path / "fused", *points, "seeds_per_process=2", "seed=1", quick=False)
    assert fused.proc.returncode == 0, fused.proc.stderr[-3000:]
    alone = train_cli(tmp_path / "alone", *points, "seed=2", quick=False)
    assert alone.proc.returncode == 0, alone.proc.stderr[-3000:]
    copy = _copies(tmp_path / "fused")["seed_2"] / "checkpoints" / "members"
    own = alone.run_dirs[0] / "checkpoints" / "members"
    names = sorted(p.name for p in own.glob("*.ckpt"))
    assert names == sorted(p.name for p in copy.glob("*.ckpt")) and len(names) == 2
    for name in names:
        a = torch.load(own / name, weights_only=True)
        b = torch.load(copy / name, weights_only=True)
        assert (b["epoch"], b["global_step"]) == (a["epoch"], a["global_step"])
        assert all(torch.allclose(b["state_dict"][k], a["state_dict"][k], atol=1e-6) for k in a["state_dict"])
    ensemble = ensemble_cli(f"source={copy.parent.parent}", "log_wandb=false")
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    assert "ensemble of 2 members" in ensemble.stdout
