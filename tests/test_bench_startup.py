"""`python -m recipelab.bench --startup`: where the seconds before training go (measured, not asserted)."""

import json
import subprocess
import sys

import pytest

from recipelab.benchmark.startup import STAGES, import_seconds_by_package
from tests.conftest import ROOT

REPORT = """import time: self [us] | cumulative | imported package
import time:       100 |        100 |     torch._C
import time:      2000 |       2100 |   torch
import time:        50 |         50 |   yaml.reader
import time:       300 |        350 | yaml
import time:        40 |       2490 | recipelab.train
import time:         7 |          7 | zlib
"""


def test_import_seconds_are_each_modules_own_time_summed_by_package():
    # torch: 100 + 2000 us; yaml: 50 + 300; recipelab 40; zlib 7 (cumulative times are not added again)
    assert import_seconds_by_package(REPORT) == {
        "torch": 0.0021,
        "yaml": 0.00035,
        "recipelab": 0.00004,
        "zlib": 0.000007,
    }
    assert import_seconds_by_package(REPORT, top=2) == pytest.approx(
        {"torch": 0.0021, "yaml": 0.00035, "(others)": 0.000047}
    )


def test_startup_profile_times_each_stage_of_a_run(tmp_path):
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"overhead": {"ratio": 0.97}}))
    cmd = [sys.executable, "-m", "recipelab.bench", "--startup", "--out", str(out)]
    cmd += ["trainer=quiet", "model=mlp", "data.train_size=600", "data.val_size=200", "logger=csv"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    profile = result["startup_profile"]
    assert result["overhead"] == {"ratio": 0.97}  # the other figures are kept
    stages = profile["stages_s"]
    assert list(stages) == list(STAGES) and all(s >= 0 for s in stages.values())
    # the stages up to the first step's end add up to the launch → first step's end
    upto = list(STAGES).index("first_step_end") + 1
    assert sum(list(stages.values())[:upto]) == pytest.approx(profile["to_first_step_end_s"])
    imports = profile["imports_by_package_s"]
    assert {"torch", "lightning"} <= set(imports) and profile["imports_s"] == pytest.approx(
        sum(imports.values())
    )
    assert 0 < profile["imports_s"] < stages["built"]
    beyond = profile["to_first_step_end_s"] - profile["imports_s"]
    assert profile["beyond_imports_s"] == pytest.approx(beyond) and beyond > 0
