"""experiment=ensemble_budget (claim 8): every arm trains the same total epochs; its script's commands."""

import os
import subprocess

import pytest

from recipelab.records.folder import CONF_DIR
from recipelab.run.validate import preflight
from tests.conftest import ROOT
from tests.training.composed import compose_train

SCRIPT = ROOT / "scripts" / "ensemble_budget.sh"


@pytest.mark.parametrize(("epochs", "members"), [(20, 5), (10, 2)])
def test_every_arm_trains_the_same_total_epochs(epochs, members):
    budget = [f"ensemble_budget.epochs={epochs}", f"ensemble_budget.member_epochs={epochs // members}"]

    def arm(name):
        return compose_train("experiment=ensemble_budget", f"arm={name}", *(budget if epochs != 20 else []))

    for name in ("single", "swa", "ema", "snapshot"):
        assert arm(name).trainer.max_epochs == epochs, name
    assert members * arm("member").trainer.max_epochs == epochs
    snapshot = arm("snapshot")
    cycle = snapshot.scheduler.build.cycle_epochs
    assert epochs // cycle == members and snapshot.callbacks.members.every_n_epochs == cycle
    assert "swa" in arm("swa").callbacks and "ema" in arm("ema").callbacks
    assert not {"swa", "ema", "members"} & set(arm("single").callbacks)


def test_preflight_passes_the_member_arm(tmp_path):
    argv = ["train", "experiment=ensemble_budget", "arm=member", f"paths.log_dir={tmp_path}"]
    assert preflight(argv, CONF_DIR) == argv


def run_script(tmp_path, *args, **env):
    """The script with a stand-in python that records each command line it is given."""
    log = tmp_path / "calls"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    full_env = {**os.environ, "PY": str(fake), "OUT": str(tmp_path / "out"), **env}
    proc = subprocess.run(
        ["bash", str(SCRIPT), *args], env=full_env, capture_output=True, text=True, timeout=300
    )
    return proc, (log.read_text().splitlines() if log.exists() else [])


def test_the_script_trains_the_arms_and_members_then_combines(tmp_path):
    out = tmp_path / "out"
    (out / "arms" / "0" / "checkpoints" / "members").mkdir(parents=True)  # a snapshot job
    (out / "arms" / "1" / "checkpoints").mkdir(parents=True)  # a single-model job
    proc, calls = run_script(tmp_path, "data.train_size=500", EPOCHS="10", MEMBERS="2", SEEDS="1,2,3")
    assert proc.returncode == 0, proc.stderr
    budget = "ensemble_budget.epochs=10 ensemble_budget.member_epochs=5"
    assert calls == [
        f"-m recipelab.train -m experiment=ensemble_budget {budget} seed=1,2,3 hydra.sweep.dir={out}/arms "
        "data.train_size=500",
        "-m recipelab.train -m experiment=ensemble_budget arm=member seed=1,2 name=ensemble_budget_members "
        f"{budget} hydra.sweep.dir={out}/members data.train_size=500",
        f"-m recipelab.ensemble source={out}/members",
        f"-m recipelab.ensemble source={out}/arms/0/",
        f"-m recipelab.evaluate ckpt_path={out}/arms/1/",
        f"-m recipelab.report {out}/arms",
    ]


@pytest.mark.parametrize(("epochs", "members"), [("10", "3"), ("10", "1"), ("ten", "2")])
def test_the_script_refuses_a_budget_members_do_not_divide(tmp_path, epochs, members):
    proc, calls = run_script(tmp_path, EPOCHS=epochs, MEMBERS=members)
    assert proc.returncode == 2 and calls == []
    assert proc.stderr.strip().splitlines() == [
        f"error: EPOCHS={epochs} must be a multiple of MEMBERS={members} (an integer >= 2)"
    ]
