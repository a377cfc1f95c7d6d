"""A run imports what it needs when it needs it: no W&B without the W&B logger, no report modules in training,
no fused-seeds modules unless seeds are fused.

The modules a training process held at its end are read from inside that process (an ``atexit`` hook
dumps ``sys.modules``); the same run with the W&B logger shows that the dump sees a module the run uses.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import QUICK, ROOT

DUMP = """
import atexit, json, runpy, sys
out, argv = sys.argv[1], sys.argv[2:]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["recipelab.train", *argv]
runpy.run_module("recipelab.train", run_name="__main__", alter_sys=True)
"""
REPORT_ONLY = ("recipelab.results", "recipelab.report", "rliable")  # scipy.stats: Lightning imports it
FUSED_ONLY = (
    "recipelab.build_fused",
    "recipelab.run.fused",
    "recipelab.training.fused",
    "recipelab.models.seed_stack",
)


def modules_of_a_run(tmp_path, *overrides: str) -> set[str]:
    out = tmp_path / "modules.json"
    args = [sys.executable, "-c", DUMP, str(out), f"paths.log_dir={tmp_path}", *QUICK, "data.train_size=500"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.run([*args, *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(out.read_text()))


def loaded(modules: set[str], prefix: str) -> bool:
    return any(m == prefix or m.startswith(prefix + ".") for m in modules)


@pytest.mark.slow
def test_a_csv_run_imports_neither_wandb_nor_the_report_nor_the_fused_seeds(tmp_path):
    csv_run = modules_of_a_run(tmp_path / "csv", "logger=csv")
    assert loaded(csv_run, "recipelab.training") and loaded(csv_run, "lightning")  # the dump saw the run
    assert not loaded(csv_run, "wandb")
    assert not [p for p in REPORT_ONLY if loaded(csv_run, p)]
    assert not [p for p in FUSED_ONLY if loaded(csv_run, p)]
    fused_run = modules_of_a_run(tmp_path / "fused", "logger=csv", "seeds_per_process=2")
    assert all(loaded(fused_run, p) for p in FUSED_ONLY)  # the same check sees them where seeds are fused
    wandb_run = modules_of_a_run(tmp_path / "wandb", "logger=wandb")
    assert loaded(wandb_run, "wandb")  # the same check sees W&B where the run logs to it
