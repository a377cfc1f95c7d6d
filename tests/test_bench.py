"""The benchmark runs end to end on a tiny size (its timings are measured, never asserted)."""

import json
import subprocess
import sys

from recipelab.benchmark.plain import steady_rates
from tests.conftest import ROOT


def test_steady_rates_skip_warmup_and_epoch_boundaries():
    record = {  # seconds per step of each contender, pair by pair
        "plain_s": [9.0, 1.0, 1.0, 7.0, 2.0],
        "template_s": [9.0, 2.0, 2.0, 50.0, 4.0],
        "crosses_epoch": [False, False, False, True, False],  # the 4th template step ran a validation
    }
    # left: pairs 2, 3 and 5 (1 warm-up pair, the crossing pair out) → 3 steps of 4 images in 4 s and 8 s
    assert steady_rates(record, batch_size=4, warmup=1) == (3.0, 1.5)


def test_bench_writes_every_measure(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "recipelab.bench",
        "--steps",
        "8",
        "--rounds",
        "1",
        "--warmup",
        "2",
        "--out",
        str(out),
        "data.train_size=1024",
        "data.val_size=500",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    for section, key in [("overhead", "ratio"), ("pipeline", "ratio"), ("startup", "to_first_step_s")]:
        assert result[section][key] > 0
    assert (
        result["overhead"]["ratio"]
        == result["overhead"]["template_img_s"] / result["overhead"]["plain_img_s"]
    )
