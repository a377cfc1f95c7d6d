"""The Makefile's own promises (README): `make help` lists every target, `make report` reports the newest
sweep, `make sync` uploads every offline W&B run. Run with a stand-in venv in a scratch folder: its
`python` is this interpreter, its `wandb` records what it was called with."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_report import make_sweep

MAKEFILE = ROOT / "Makefile"


@pytest.fixture
def workdir(tmp_path):
    """A scratch folder where `make -f <the Makefile>` finds an installed venv and runs nothing else."""
    (tmp_path / "pyproject.toml").write_text("")
    os.utime(tmp_path / "pyproject.toml", (0, 0))  # older than the stamp: `install` has nothing to do
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "wandb").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/wandb_called\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    (tmp_path / "venv" / ".installed").write_text("")
    return tmp_path


def make(workdir, *args: str) -> subprocess.CompletedProcess:
    command = ["make", "-s", "-f", str(MAKEFILE), "VENV=venv", *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=120)


def test_help_lists_every_target(workdir):
    text = MAKEFILE.read_text()
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", text, re.M).group(1).replace("\\\n", " ").split()
    listed = re.findall(r"^\s*(?:\x1b\[36m)?([a-z-]+)", make(workdir, "help").stdout, re.M)
    assert sorted(listed) == sorted(phony)


def test_report_without_a_folder_reports_the_newest_sweep_by_its_name(workdir):
    old = make_sweep(workdir / "logs/multiruns/2025-01-01/10-00-00_old")
    new = make_sweep(workdir / "logs/multiruns/2025-01-02/09-00-00_new")
    os.utime(new, (1, 1))  # the older sweep touched last (a re-run job, a report written into it)
    proc = make(workdir, "report", "ARGS=report.wandb=false report.baseline=optimizer=adam")
    assert proc.returncode == 0, proc.stderr
    assert (new / "report.json").is_file() and not (old / "report.json").exists()


def test_sync_uploads_every_offline_run_under_logs(workdir):
    assert make(workdir, "sync").stdout.strip() == "no offline W&B runs under logs/"
    runs = [workdir / "logs" / job / "wandb" / f"offline-run-{n}" for n, job in enumerate(("a", "b/c"))]
    for run in runs:
        run.mkdir(parents=True)
    (workdir / "logs" / "a" / "wandb" / "latest-run").mkdir()  # not an offline run: left out
    assert make(workdir, "sync").returncode == 0
    called = (workdir / "wandb_called").read_text().split()
    assert called[0] == "sync" and sorted(called[1:]) == sorted(str(r.relative_to(workdir)) for r in runs)
