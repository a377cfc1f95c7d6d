"""Edges of a fused chunk. One whose fit runs no validation (validation turned off, or due only after
the last epoch) ends as its separate runs end: each seed tested on its last weights, no best checkpoint,
and the last checkpoint where the separate run's ModelCheckpoint leaves one. Before, the chunk trained to
the end, then failed every seed (it looked for a best checkpoint that no validation had ranked). The
chunk's own checkpoint (its k copies stacked, which resumes it) given to evaluate or ensemble is refused
with one line saying where each seed's are. A fused sweep stopped by a signal resumes its chunk when its
command is run again, in its jobs' own folders, and ends where the sweep never stopped ends."""

import json

import pytest
import torch
from lightning.pytorch.accelerators import CPUAccelerator

from recipelab.build_fused import build_fused_run
from recipelab.errors import UserError
from recipelab.run.fused import copy_tester
from tests.conftest import train_cli
from tests.test_evaluate import evaluate_cli
from tests.test_fused_runs import SMALL
from tests.test_resume import EXACT
from tests.training.composed import compose_train


def _sweep(tmp_path, name: str, *extra: str):
    folder = tmp_path / name
    run = train_cli(
        tmp_path / "logs", "-m", *SMALL, "seed=1,2", *extra, f"hydra.sweep.dir={folder}", quick=False
    )
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    "no_validation", ["+trainer.limit_val_batches=0", "+trainer.check_val_every_n_epoch=3"]
)
def test_a_fused_chunk_without_validation_tests_each_seeds_last_weights_as_its_separate_run(
    tmp_path, no_validation
):
    plain = _sweep(tmp_path, "plain", no_validation)
    fused = _sweep(tmp_path, "fused", no_validation, "seeds_per_process=2")
    for job in ("0", "1"):
        a = json.loads((plain / job / "metrics.json").read_text())
        b = json.loads((fused / job / "metrics.json").read_text())
        assert "seeds_per_process" in b and "seeds_per_process" not in a
        assert (b["status"], b["best_checkpoint"], b["tested_epoch"]) == ("completed", "", None)
        assert (a["status"], a["best_checkpoint"], a["tested_epoch"]) == ("completed", "", None)
        assert not any(key.startswith(("val/", "last_val/")) for key in b["metrics"])
        assert b["metrics"].keys() == a["metrics"].keys()
        for key, value in a["metrics"].items():  # fp32, no dropout: the same numbers
            assert b["metrics"][key] == pytest.approx(value, abs=1e-3), (job, key)
        saved = [sorted(p.name for p in (f / job).glob("checkpoints/*.ckpt")) for f in (plain, fused)]
        assert saved[1] == saved[0]
    # turned off, the separate run keeps its last weights; due later, it keeps nothing
    assert saved[0] == (["last.ckpt"] if "limit_val_batches" in no_validation else [])
    if saved[0]:  # the chunk's own checkpoint, where a seed's is expected: one line, not a state-dict error
        proc = evaluate_cli(f"ckpt_path={fused / 'chunks' / '0'}", "log_wandb=false")
        assert proc.returncode == 2, proc.stderr[-2000:]
        (line,) = proc.stderr.strip().splitlines()
        assert "a fused chunk's checkpoint (seeds_per_process=2)" in line and "its job folder" in line


def test_devices_auto_that_starts_several_processes_is_refused_before_training(tmp_path, monkeypatch):
    """``trainer.devices=auto`` passes the preflight (the machine decides); on a machine where it means
    several devices, and so DDP, the chunk is refused once the Trainer has counted them."""
    monkeypatch.setattr(CPUAccelerator, "auto_device_count", staticmethod(lambda: 2))
    cfg = compose_train("seeds_per_process=2", "trainer.devices=auto", "logger=csv")
    with pytest.raises(UserError, match=r"^trainer.devices=auto: .*seeds_per_process=2: 2 processes"):
        build_fused_run(cfg, [1, 2], [tmp_path / "1", tmp_path / "2"])


def test_each_copy_is_tested_in_the_chunks_precision_on_its_device(tmp_path):
    """The default recipe trains in bf16 autocast on the CPU, and so does the test of each copy (before,
    the tester autocast for CUDA: on the CPU the copies were tested in fp32, their separate runs in bf16)."""
    cfg = compose_train("seeds_per_process=2", "logger=csv")
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "cpu"
    tester = copy_tester(build_fused_run(cfg, [1, 2], [tmp_path / "1", tmp_path / "2"]))
    with tester.precision_plugin.forward_context():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert tester.num_devices == 1 and tester.logger is None


def test_each_copys_loss_is_the_one_its_separate_run_computes_bit_for_bit(tmp_path):
    """One cross-entropy call a copy, as the separate run makes it: the mean of one flattened call's
    per-sample losses sums them in another order (a 7th-digit difference in every logged loss)."""
    cfg = compose_train("seeds_per_process=3", "logger=csv")
    module = build_fused_run(cfg, [1, 2, 3], [tmp_path / str(s) for s in (1, 2, 3)]).module
    generator = torch.Generator().manual_seed(0)
    logits, labels = (
        torch.randn(3, 500, 10, generator=generator),
        torch.randint(0, 10, (3, 500), generator=generator),
    )
    separate = [
        torch.nn.functional.cross_entropy(logits[i], labels[i], label_smoothing=0.1) for i in range(3)
    ]
    assert torch.equal(module.copy_losses(logits, labels, 0.1), torch.stack(separate))


@pytest.mark.slow
def test_a_fused_sweep_stopped_by_a_signal_resumes_its_chunk_when_run_again(tmp_path):
    stop = ["+callbacks.sig._target_=tests.helpers.SignalAtStep", "+callbacks.sig.step=9"]
    sweep = ["-m", *EXACT, "seed=1,2", "seeds_per_process=2", "logger=csv", *stop]
    args = [*sweep, "+callbacks.sig.signal=SIGINT", f"hydra.sweep.dir={tmp_path / 'cut'}"]
    cut = train_cli(tmp_path / "logs", *args, quick=False)
    assert cut.proc.returncode == 130, cut.proc.stderr[-3000:]
    records = [json.loads((tmp_path / "cut" / job / "metrics.json").read_text()) for job in ("0", "1")]
    assert [r["status"] for r in records] == ["interrupted", "interrupted"]
    again = train_cli(tmp_path / "logs", *args, quick=False)  # the same command: step 9 lies behind it
    assert again.proc.returncode == 0 and "chunk 0, 1: resuming from" in again.proc.stdout, again.proc.stderr
    never = [*sweep, "+callbacks.sig.signal=SIGINT", "+callbacks.sig.at_seed=-1", "+callbacks.sig.run_seed=1"]
    straight = train_cli(tmp_path / "logs", *never, f"hydra.sweep.dir={tmp_path / 'straight'}", quick=False)
    assert straight.proc.returncode == 0, straight.proc.stderr[-3000:]
    for job in ("0", "1"):
        a, b = (json.loads((tmp_path / f / job / "metrics.json").read_text()) for f in ("straight", "cut"))
        assert b["status"] == "completed" and b["metrics"] == a["metrics"]  # bit for bit
