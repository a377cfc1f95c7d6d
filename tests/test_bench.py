"""The benchmark runs end to end on a tiny size (its timings are measured, never asserted)."""

import json
import subprocess
import sys

from recipelab.bench import steady_rate
from tests.conftest import ROOT


def test_steady_rate_skips_warmup_and_epoch_boundaries():
    times = [0.0, 10.0, 11.0, 12.0, 20.0, 21.0]  # the 12→20 gap crosses into epoch 1
    epochs = [0, 0, 0, 0, 1, 1]
    # after 1 warm-up gap: gaps 1, 1 (epoch 0) and 1 (epoch 1) → 3 steps of 4 images in 3 s
    assert steady_rate(times, epochs, batch_size=4, warmup=1) == 4.0


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
