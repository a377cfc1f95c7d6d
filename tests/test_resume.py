"""A run killed mid-epoch and resumed ends exactly where the same run never interrupted ends."""

import os
import signal
import subprocess
import sys

import lightning as L
import pytest
import torch

from recipelab.build import build_model
from recipelab.data import TensorBatchLoader, build_augmentation
from recipelab.errors import UserError
from recipelab.records.folder import CONF_DIR
from recipelab.records.wandb_file import read_run, run_files
from recipelab.run.validate import preflight
from tests.conftest import fashion_dm, train_cli
from tests.training.composed import compose_train

# 2 epochs of 6 batches, a step checkpoint every 2 steps; dropout and augmentation draw random numbers.
EXACT = [
    "trainer.precision=32-true",
    "trainer.deterministic=true",
    "trainer.max_epochs=2",
    "data.train_size=600",
    "data.val_size=200",
    "data.batch_size=100",
    "model.widths=[8,16]",
    "regularization.dropout=0.2",
    "callbacks.step_checkpoint.every_n_train_steps=2",
]
KILL_AT = 9  # epoch 1, batch 3: the last checkpoint (step 8) is mid-epoch, and step 9 is lost


class KillAtStep(L.Callback):
    """SIGKILL this process as the given optimizer step begins: a crash with no chance to clean up."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    straight = train_cli(tmp_path / "straight", *EXACT)
    assert straight.proc.returncode == 0, straight.proc.stderr[-3000:]

    logs = tmp_path / "killed"
    kill = [f"+callbacks.kill._target_={__name__}.KillAtStep", f"+callbacks.kill.step={KILL_AT}"]
    killed = train_cli(logs, *EXACT, *kill)
    assert killed.proc.returncode == -signal.SIGKILL
    run_dir = killed.run_dir
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 8 and saved["epoch"] == 1  # mid-epoch: 2 of epoch 1's 6 batches done

    resumed = train_cli(logs, f"resume={run_dir}", "~callbacks.kill", quick=False)
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
    assert resumed.run_dirs == [run_dir]  # continued in the same folder

    a, b = _weights(straight.run_dir), _weights(run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    expected, got = straight.metrics(), resumed.metrics(run_dir)
    assert got["status"] == "completed" and got["steps"] == expected["steps"] == 12
    assert got["metrics"] == expected["metrics"]  # bit for bit: the same floats

    # the same W&B run: wandb writes one offline folder per process, both with the run's id
    ids = {p.name.rsplit("-", 1)[1] for p in run_dir.glob("wandb/offline-run-*")}
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 2 and len(ids) == 1
    last = read_run(run_files(run_dir)[-1])
    assert last.summary["test/acc"] == expected["metrics"]["test/acc"]


def _fake_run(logs, when, name, overrides, saved=("optimizer_states", "loops")):
    """A run folder whose last.ckpt holds the default network's weights and the ``saved`` keys (empty)."""
    run_dir = logs / "runs" / when / f"10-00-00_{name}"
    (run_dir / "checkpoints").mkdir(parents=True)
    weights = {f"model.{k}": v for k, v in build_model(compose_train()).state_dict().items()}
    torch.save({"state_dict": weights, **dict.fromkeys(saved, {})}, run_dir / "checkpoints" / "last.ckpt")
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return run_dir


def test_resume_and_ckpt_path_last_continue_in_the_run_folder(tmp_path):
    logs = tmp_path / "logs"
    old = _fake_run(logs, "2026-01-01", "default", ["seed=5"])
    new = _fake_run(logs, "2026-01-02", "default", ["seed=6", "trainer.max_epochs=3"])
    _fake_run(logs, "2026-01-03", "other", [])
    os.utime(old / "checkpoints" / "last.ckpt", (0, 0))  # the newest last.ckpt of this name wins

    def continued(run_dir):
        return [f"hydra.run.dir='{run_dir}'", f"ckpt_path='{run_dir / 'checkpoints' / 'last.ckpt'}'"]

    argv = preflight(["train", f"paths.log_dir={logs}", "ckpt_path=last"], CONF_DIR)
    assert argv == ["train", f"paths.log_dir={logs}", *continued(new)]
    # resume= replays the run's own overrides; the ones given after it win
    argv = preflight(["train", f"resume={new}", "trainer.max_epochs=5"], CONF_DIR)
    assert argv == ["train", "seed=6", "trainer.max_epochs=3", "trainer.max_epochs=5", *continued(new)]
    with pytest.raises(UserError, match="resume="):
        preflight(["train", f"resume={tmp_path}"], CONF_DIR)
    # a sweep's chunk of fused seeds resumes with its sweep (its seeds' folders are the sweep's jobs)
    chunk = _fake_run(
        logs, "2026-01-04", "chunk", ["seeds_per_process=2", "+chunk_seeds=[1,2]", "+chunk_jobs=[0,1]"]
    )
    with pytest.raises(UserError, match="a chunk of a sweep's fused seeds; re-run the sweep's command"):
        preflight(["train", f"resume={chunk}"], CONF_DIR)


def test_a_checkpoint_training_cannot_resume_from_is_refused_before_the_folder_is_touched(tmp_path):
    # a fused seed's folder (seeds_per_process): its checkpoints hold weights only; resuming it failed
    # inside Lightning after Hydra had reused the folder, and the failed run's record replaced its own
    seed = _fake_run(tmp_path / "logs", "2026-01-01", "fused", ["seed=2"], saved=("epoch",))
    (seed / "metrics.json").write_text('{"status": "completed"}')
    run = train_cli(tmp_path / "logs", f"resume={seed}", "trainer.max_epochs=3")
    last = run.proc.stderr.strip().splitlines()[-1]
    assert run.proc.returncode == 2 and "training cannot resume from it (no optimizer_states, loops)" in last
    assert (seed / "metrics.json").read_text() == '{"status": "completed"}'
    assert sorted(p.name for p in seed.iterdir()) == [".hydra", "checkpoints", "metrics.json"]
    (tmp_path / "notes.json").write_text("{}")  # not a checkpoint at all
    with pytest.raises(UserError, match=r"notes\.json: corrupt"):
        preflight(["train", f"ckpt_path={tmp_path / 'notes.json'}"], CONF_DIR)


def test_resuming_with_another_network_is_refused_and_leaves_the_run_as_it_was(tmp_path):
    # it failed in Lightning's load_state_dict, after Hydra had rewritten .hydra/overrides.yaml with the
    # new network (every later resume of the folder then failed too) and the record had become `failed`
    run = train_cli(tmp_path, "model=mlp", "model.hidden=[16]", "logger=csv")
    assert run.proc.returncode == 0, run.proc.stderr[-2000:]
    (folder,) = (tmp_path / "runs").glob("*/*")
    kept = {p: p.read_bytes() for p in (folder / "metrics.json", folder / ".hydra" / "overrides.yaml")}
    other = train_cli(tmp_path, f"resume={folder}", "model.hidden=[32]", "trainer.max_epochs=2")
    last = other.proc.stderr.strip().splitlines()[-1]
    assert (
        other.proc.returncode == 2
        and "its network is not the run's (model.features.0.0.weight: (16, 784)" in last
    )
    assert {p: p.read_bytes() for p in kept} == kept
    preflight(["train", f"resume={folder}", "trainer.max_epochs=2"], CONF_DIR)  # its own network passes


def test_resumed_loader_continues_the_uninterrupted_order():
    images, labels = torch.arange(50).view(50, 1, 1, 1), torch.arange(50)
    straight = TensorBatchLoader(images, labels, batch_size=8, shuffle=True, seed=3)
    straight.sampler.set_epoch(2)
    expected = [y.tolist() for _, y in straight]

    first = TensorBatchLoader(images, labels, batch_size=8, shuffle=True, seed=3)
    first.sampler.set_epoch(2)
    it = iter(first)
    seen = [next(it)[1].tolist() for _ in range(3)]
    state = first.state_dict()

    again = TensorBatchLoader(images, labels, batch_size=8, shuffle=True, seed=3)
    again.load_state_dict(state)
    again.sampler.set_epoch(2)  # Lightning sets the epoch after restoring, before the first batch
    assert seen + [y.tolist() for _, y in again] == expected
    again.sampler.set_epoch(3)  # the next epoch starts from its first batch
    assert len(list(again)) == len(again)


def test_datamodule_state_restores_augmentation_and_position():
    dm = fashion_dm(augmentation=build_augmentation([{"op": "flip"}], seed=1))
    dm.splits["train"] = (torch.zeros(30, 1, 4, 4, dtype=torch.uint8), torch.zeros(30, dtype=torch.long))
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    dm.augmentation(torch.rand(4, 1, 4, 4))
    state = dm.state_dict()
    draws = torch.rand(8, generator=dm.augmentation.generator)

    other = fashion_dm(augmentation=build_augmentation([{"op": "flip"}], seed=99))
    other.splits = dm.splits
    other.load_state_dict(state)
    assert torch.equal(torch.rand(8, generator=other.augmentation.generator), draws)
    assert other.train_dataloader()._resume == {"epoch": 0, "batch": 1}


SAVE_AND_CRASH = r"""
import io, os, signal, sys, torch
mode, path = sys.argv[1], sys.argv[2]
if mode == "atomic":
    from recipelab.training.reliability import AtomicCheckpointIO
    save = AtomicCheckpointIO().save_checkpoint
else:  # the plain way, writing the file in place
    def save(obj, path):
        with open(path, "wb") as f:
            torch.save(obj, f)
real_save = torch.save

def save_half_then_die(obj, f):  # the process dies halfway through writing the file
    buf = io.BytesIO()
    real_save(obj, buf)
    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

save({"step": 1, "w": torch.ones(100_000)}, path)
torch.save = save_half_then_die
save({"step": 2, "w": torch.zeros(100_000)}, path)
"""


@pytest.mark.parametrize("mode", ["atomic", "in_place"])
def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, mode):
    path = tmp_path / "last.ckpt"
    proc = subprocess.run(
        [sys.executable, "-c", SAVE_AND_CRASH, mode, str(path)], capture_output=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    if mode == "in_place":  # the control: without the rename, the crash leaves a broken file
        with pytest.raises(RuntimeError):
            torch.load(path, weights_only=True)
        return
    state = torch.load(path, weights_only=True)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(100_000))
