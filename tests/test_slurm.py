"""launcher=slurm on a real one-node SLURM cluster (scripts/slurm_local.sh): sweeps whose jobs are SLURM jobs,
a job that gets SLURM's time-limit warning saves its step, requeues itself and ends exactly where an
uninterrupted job ends, a DDP job whose 2 ranks SLURM starts, and a failed job that does not stop the sweep.

The cluster is started here (as root; the packages installed with apt if missing) and stopped at the end if
these tests started it. Every test is skipped, with the reason, only where the cluster cannot be had: not
root, or SLURM not installed and not installable; as root with SLURM installed, a start that fails fails."""

from __future__ import annotations

import os
import shutil
import subprocess

import lightning as L
import pytest
import torch

from recipelab.records.wandb_file import read_run, run_files
from tests.conftest import ROOT, train_cli
from tests.test_resume import EXACT

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = ROOT / "scripts" / "slurm_local.sh"
SMALL = ["data.train_size=300", "data.val_size=300", "trainer.limit_test_batches=2", "logger=csv"]
WARN_AT = 5  # epoch 0, batch 5 of 6: after the step checkpoint of step 4, before the epoch's end


class WarnAtStep(L.Callback):
    """Has SLURM send this job its time-limit warning (what ``--signal=USR2@<s>`` sends) as the given step
    begins, in the job's first start only; ``step=-1``: never."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        first_start = not os.environ.get("SLURM_RESTART_COUNT")
        if first_start and trainer.global_step == self.step and trainer.global_rank == 0:
            # scancel runs inside the job, so SLURM signals it too: it ignores USR2 (kept across exec)
            job = os.environ["SLURM_JOB_ID"]
            warn = ["sh", "-c", 'trap "" USR2; exec scancel --signal=USR2 "$0"', job]
            subprocess.run(warn, check=True, timeout=60)


def _cluster_env() -> dict:
    folder = os.environ.get("SLURM_LOCAL_DIR", "/tmp/recipelab-slurm")
    return {"SLURM_CONF": f"{folder}/slurm.conf"}


def _installed() -> bool:
    return all(shutil.which(cmd) for cmd in ("slurmctld", "slurmd", "sbatch", "munged"))


@pytest.fixture(scope="module")
def slurm():
    """The environment that points SLURM's commands at the local cluster; the cluster up meanwhile."""
    env = {**os.environ, **_cluster_env()}
    status = subprocess.run([SCRIPT, "status"], env=env, capture_output=True, timeout=60)
    up = bool(shutil.which("sinfo")) and status.returncode == 0
    if not up:
        if os.geteuid() != 0:
            pytest.skip("a local SLURM cluster needs root (scripts/slurm_local.sh start)")
        if not _installed() and not shutil.which("apt-get"):
            pytest.skip("SLURM is not installed and there is no apt-get to install it")
        start = subprocess.run([SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=900)
        if start.returncode != 0:
            subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, timeout=120)
            why = start.stderr.strip()[-1500:]
            if not _installed():
                pytest.skip(f"SLURM could not be installed: {why}")
            pytest.fail(f"SLURM is installed but the local cluster did not start: {why}")
    yield _cluster_env()
    if not up:
        subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, timeout=120)


def sweep(log_dir, slurm, *overrides, timeout=300):
    run = train_cli(log_dir, "-m", "launcher=slurm", *overrides, env=slurm, timeout=timeout)
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    return run


def test_a_sweep_runs_each_job_as_a_slurm_job(slurm, tmp_path):
    run = sweep(tmp_path, slurm, *SMALL, "seed=1,2")
    jobs = run.run_dirs
    assert [run.metrics(d)["status"] for d in jobs] == ["completed", "completed"]
    assert [run.metrics(d)["seed"] for d in jobs] == [1, 2]
    submitit = jobs[0].parent / ".submitit"
    (script,) = submitit.glob(".submission_file_*.sh")
    assert "#SBATCH --signal=USR2@120" in script.read_text() and "gpus" not in script.read_text()
    assert len(list(submitit.glob("*/*_result.pkl"))) == 2  # each job ran as a task of a SLURM job array
    assert "2 jobs, 2 completed, 0 failed, 0 diverged" in run.proc.stdout
    assert "sacct" not in run.proc.stdout + run.proc.stderr  # no accounting here: states come from squeue


def test_a_job_that_raises_inside_slurm_is_failed_and_the_sweep_goes_on(slurm, tmp_path):
    bug = [
        "+callbacks.bug._target_=tests.helpers.RaiseAtSeed",
        "+callbacks.bug.run_seed=${seed}",
        "+callbacks.bug.at_seed=1",
    ]
    run = sweep(tmp_path, slurm, *SMALL, "seed=1,2", *bug)
    assert [run.metrics(d)["status"] for d in run.run_dirs] == ["failed", "completed"]
    assert "2 jobs, 1 completed, 1 failed, 0 diverged" in run.proc.stdout


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def warned_and_straight(log_dir, slurm, *overrides):
    """Two jobs of the same recipe (EXACT, W&B on) in one sweep: job 0 gets SLURM's time-limit warning at
    step 5 of 12, job 1 never does."""
    warn = [f"+callbacks.warn._target_={__name__}.WarnAtStep", "+callbacks.warn.step=-1"]
    run = sweep(log_dir, slurm, *EXACT, *overrides, "seed=1", *warn, f"callbacks.warn.step={WARN_AT},-1")
    assert "2 jobs, 2 completed, 0 failed, 0 diverged" in run.proc.stdout
    return run


def assert_requeued_and_resumed_exactly(run) -> None:
    warned, straight = run.run_dirs
    expected, got = run.metrics(straight), run.metrics(warned)
    assert got["status"] == expected["status"] == "completed" and got["steps"] == expected["steps"] == 12
    assert got["metrics"] == expected["metrics"]  # bit for bit
    a, b = _weights(straight), _weights(warned)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # in between: stopped at a saved step after the warning, requeued, resumed in the same W&B run
    logs = "".join(p.read_text() for p in warned.parent.glob(".submitit/*_0/*_0_0_log.*"))
    assert "interrupted by SIGUSR2 at step" in logs and ": last.ckpt saved, requeueing" in logs
    assert "Requeued job" in logs and f"job {warned.name}: resuming from" in logs
    paths = run_files(warned)
    assert len(paths) == 2 and len({p.parent.name.rsplit("-", 1)[1] for p in paths}) == 1  # one run id
    first, second = (read_run(p) for p in paths)
    assert first.summary["status"] == "interrupted" and second.summary["status"] == "completed"
    assert len(run_files(straight)) == 1


def test_the_time_limit_warning_saves_the_step_requeues_and_resumes_exactly(slurm, tmp_path):
    assert_requeued_and_resumed_exactly(warned_and_straight(tmp_path, slurm))


def test_a_ddp_job_is_one_slurm_job_whose_two_tasks_slurm_starts_and_requeues(slurm, tmp_path):
    # the ranks agree on a signal every check_every steps (default: log_every_n_steps); here every step
    run = warned_and_straight(
        tmp_path,
        slurm,
        "trainer=ddp_cpu",
        "trainer.precision=32-true",
        "callbacks.graceful_stop.check_every=1",
    )
    assert_requeued_and_resumed_exactly(run)  # both ranks stopped at the same saved step
    for job in run.run_dirs:  # one folder (its .hydra/ from rank 0), one metrics.json, one W&B run
        assert (job / ".hydra").is_dir() and (job / "train.log").is_file()
        assert (job / "train_rank1.log").is_file()
    submitit = run.run_dirs[0].parent / ".submitit"
    (script,) = submitit.glob(".submission_file_*.sh")
    assert "#SBATCH --ntasks-per-node=2" in script.read_text()
    (rank1,) = submitit.glob("*_1/*_1_1_log.out")  # SLURM started rank 1 of job 1, not the job's rank 0
    assert "global_rank=1(2)" in rank1.read_text()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in rank1.with_suffix(".err").read_text()
