"""SIGINT and SIGTERM during training: the step under way finishes, last.ckpt holds it, metrics.json says
`interrupted`, the exit code is 130 / 143, and resuming ends exactly where an uninterrupted run ends."""

import shutil
import signal

import pytest
import torch

from recipelab.records.wandb_file import read_run, run_files
from tests.conftest import train_cli
from tests.test_resume import EXACT

STOP_AT = 9  # epoch 1, batch 3 (6 batches an epoch): after the last step checkpoint (step 8)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run = train_cli(tmp_path_factory.mktemp("straight"), *EXACT)
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    return run


def _contents(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_signal_mid_epoch_is_recorded_and_resumes_exactly(straight, tmp_path, name):
    sig = [
        "+callbacks.sig._target_=tests.helpers.SignalAtStep",
        f"+callbacks.sig.step={STOP_AT}",
        f"+callbacks.sig.signal={name}",
    ]
    stopped = train_cli(tmp_path, *EXACT, *sig)
    assert stopped.proc.returncode == 128 + getattr(signal, name)
    last_line = stopped.proc.stderr.strip().splitlines()[-1]
    assert (
        last_line
        == f"error: interrupted by {name} at step {STOP_AT + 1} (epoch 1); last.ckpt holds that step"
    )
    run_dir = stopped.run_dir
    record = stopped.metrics()
    assert record["status"] == "interrupted" and record["steps"] == STOP_AT + 1
    assert record["interrupted"] == {"signal": name, "step": STOP_AT + 1, "epoch": 1}
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == STOP_AT + 1  # the step under way finished and was saved
    (wandb_log,) = run_files(run_dir)
    assert read_run(wandb_log).summary["status"] == "interrupted"

    resumed = train_cli(tmp_path, f"resume={run_dir}", "~callbacks.sig", quick=False)
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
    a, b = _weights(straight.run_dir), _weights(run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    expected, got = straight.metrics(), resumed.metrics(run_dir)
    assert got["status"] == "completed" and got["steps"] == expected["steps"]
    assert got["metrics"] == expected["metrics"]  # bit for bit
    assert got["history"] == [
        {**h, "time_s": g["time_s"]} for h, g in zip(expected["history"], got["history"], strict=True)
    ]


def test_stale_temporary_files_are_removed_on_the_next_start(straight, tmp_path):
    # a copy: resuming writes into the run folder, which the other tests read as it was trained
    run_dir = shutil.copytree(straight.run_dir, tmp_path / "run")
    shared = _contents(straight.run_dir)
    stale = [run_dir / "checkpoints" / ".last.ckpt.tmp-99999", run_dir / "metrics.json.tmp"]
    for path in stale:
        path.write_bytes(b"half written")
    resumed = train_cli(tmp_path, f"resume={run_dir}", quick=False)
    assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
    assert not any(p.exists() for p in stale)
    now = _contents(straight.run_dir)  # the original is byte for byte as it was trained
    assert [str(p) for p in sorted(now.keys() | shared.keys()) if now.get(p) != shared.get(p)] == []
