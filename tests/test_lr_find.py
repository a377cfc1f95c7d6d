"""`python -m recipelab.lr_find`: Lightning's range test on the composed recipe, its plot and suggestion."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # a subprocess that loads the data: about a minute on the shared 2-core machine
def test_lr_find_prints_the_suggestion_and_saves_the_plot(tmp_path):
    args = [
        sys.executable, "-m", "recipelab.lr_find", f"paths.log_dir={tmp_path}", "trainer=quiet",
        "data.train_size=400", "data.batch_size=20", "model.widths=[4,8]", "model.depth=1",
        "lr_find.num_training=20", "lr_find.early_stop_threshold=null",
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = {p.parent for p in tmp_path.rglob("lr_find.json")}
    found = json.loads((run_dir / "lr_find.json").read_text())
    lrs, losses = np.array(found["lr"]), np.array(found["loss"])
    assert len(lrs) == len(losses) == 20
    ratios = lrs[2:] / lrs[1:-1]  # an exponential sweep from min_lr (1e-6) to max_lr (10)
    assert lrs[0] == 1e-6 and np.allclose(ratios, ratios[0]) and lrs[-1] == np.float64(10.0)
    # Lightning's rule: the lr where the loss falls fastest with the lr (first 10 and last point skipped)
    steepest = lrs[10:-1][np.gradient(losses[10:-1], lrs[10:-1]).argmin()]
    assert found["suggestion"] == steepest
    assert f"suggested lr: {steepest:.3g}" in proc.stdout
    image = matplotlib.image.imread(run_dir / "lr_find.png")
    assert image.ndim == 3 and image.shape[0] > 100


def test_lr_find_refuses_fused_seeds_before_any_work(tmp_path):
    from recipelab.errors import UserError
    from recipelab.records.folder import CONF_DIR
    from recipelab.run.validate import preflight

    argv = ["lr_find", f"paths.log_dir={tmp_path}"]
    assert preflight(argv, CONF_DIR, "lr_find") == argv
    with pytest.raises(
        UserError, match=r"^python -m recipelab.lr_find: cannot be used with seeds_per_process=2"
    ):
        preflight([*argv, "seeds_per_process=2"], CONF_DIR, "lr_find")  # it ran one range test, silently
    assert list(tmp_path.iterdir()) == []
