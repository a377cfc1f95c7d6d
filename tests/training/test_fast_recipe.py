"""experiment=fashion_fast and its ablation: each arm takes out exactly one trick (issue 17)."""

from __future__ import annotations

import pytest
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from recipelab.errors import UserError
from tests.conftest import ROOT
from tests.training.composed import compose_train, flat_config

# what each arm of experiment=fashion_fast_ablation changes in the composed config
ARMS = {
    "whiten": {"whiten.kernel"},
    "dirac": {"dirac_init"},
    "flip_alternate": {"augmentation.ops"},
    "tta_shift": {"tta_shift"},
    "stages": {"model.widths", "model.depth"},
    "final_weights": {"callbacks.model_checkpoint.monitor", "callbacks.model_checkpoint.filename"},
}


def test_the_fast_recipe_turns_its_tricks_on():
    cfg = compose_train("experiment=fashion_fast")
    assert cfg.whiten.kernel == 2 and cfg.dirac_init and cfg.tta_shift == 1
    assert list(cfg.model.depth) == [1, 1, 2, 2] and cfg.augmentation.ops[0].alternate
    assert cfg.callbacks.model_checkpoint.monitor is None  # the final weights are tested


def test_the_accuracy_recipe_is_the_fast_one_wider_and_longer():
    fast, best = compose_train("experiment=fashion_fast"), compose_train("experiment=fashion_best")
    assert best.whiten.kernel == 2 and best.dirac_init and best.tta_shift == 1
    assert best.callbacks.model_checkpoint.monitor is None
    assert [b // f for b, f in zip(best.model.widths, fast.model.widths, strict=True)] == [3] * 4
    assert best.trainer.max_epochs > 3 * fast.trainer.max_epochs
    assert [op.op for op in best.augmentation.ops] == ["flip", "crop", "erasing"]


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_each_ablation_arm_takes_out_exactly_one_trick(arm):
    whole = flat_config(compose_train("experiment=fashion_fast_ablation", "without=none"))
    without = flat_config(compose_train("experiment=fashion_fast_ablation", f"without={arm}"))
    changed = {k for k in whole.keys() | without.keys() if whole.get(k) != without.get(k)}
    assert changed == ARMS[arm]
    default = flat_config(compose_train())  # the arm falls back to the default recipe's value
    assert all(without[k] == default[k] for k in ARMS[arm])


def test_the_ablation_sweeps_every_arm_against_the_whole_recipe():
    experiment = OmegaConf.load(ROOT / "conf" / "experiment" / "fashion_fast_ablation.yaml")
    swept = set(experiment.hydra.sweeper.params.without.split(","))
    assert swept == {p.stem for p in (ROOT / "conf" / "without").glob("*.yaml")} == {"none", *ARMS}
    assert experiment.report.baseline == "without=none"


def test_preflight_checks_the_jobs_hydra_runs_when_the_command_line_replaces_a_sweep_list(monkeypatch):
    """Hydra's basic sweeper lets a command-line value replace the experiment's list for that key."""
    from recipelab.run import validate

    checked = []
    monkeypatch.setattr(validate, "check", lambda cfg, defaults, job: checked.append(sorted(job)))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        validate.check_sweep(["experiment=fashion_fast_ablation", "without=none,stages", "seed=4"])
    assert checked == [
        sorted(["experiment=fashion_fast_ablation", "seed=4", f"without={arm}"]) for arm in ("none", "stages")
    ]


def test_preflight_refuses_a_negative_tta_shift():
    from recipelab.run import validate
    from recipelab.run.compose import compose_job

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg, defaults = compose_job(["tta_shift=-1"])
        with pytest.raises(UserError, match=r"^tta_shift=-1: must be an integer >= 0"):
            validate.check(cfg, defaults, ["tta_shift=-1"])


@pytest.mark.parametrize(("arm", "tested_epoch"), [("none", 1), ("final_weights", 0)])
def test_the_fast_recipe_tests_its_final_weights(tmp_path, arm, tested_epoch):
    """With an lr too small to move any weight (and no batch statistics) val/acc ties at every epoch:
    the best-val/acc choice keeps the first epoch, the final-weights choice tests the last one."""
    import torch

    from tests.conftest import train_cli

    run = train_cli(
        tmp_path,
        "experiment=fashion_fast_ablation",
        f"without={arm}",
        "normalization=none",
        "optimizer.lr=1e-30",
        "trainer.max_epochs=2",
        "data.train_size=500",
        "logger=csv",
    )
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    record = run.metrics()
    vals = [row["val/acc"] for row in record["history"] if "val/acc" in row]
    assert len(vals) == 2 and vals[0] == vals[1]
    tested = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=True)
    assert tested["epoch"] == tested_epoch
    assert tested["global_step"] == record["steps"] * (tested_epoch + 1) // 2
