"""experiment=fashion_fast and its ablation: each arm takes out exactly one trick (issue 17)."""

from __future__ import annotations

import pytest
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from recipelab.errors import UserError
from tests.conftest import ROOT
from tests.training.composed import compose_train

# what each arm of experiment=fashion_fast_ablation changes in the composed config
ARMS = {
    "whiten": {"whiten.kernel"},
    "dirac": {"dirac_init"},
    "flip_alternate": {"augmentation.ops"},
    "tta_shift": {"tta_shift"},
    "stages": {"model.widths", "model.depth"},
}


def _flat(cfg) -> dict:
    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return dict(walk(OmegaConf.to_container(cfg, resolve=True)))


def test_the_fast_recipe_turns_its_tricks_on():
    cfg = compose_train("experiment=fashion_fast")
    assert cfg.whiten.kernel == 2 and cfg.dirac_init and cfg.tta_shift == 1
    assert list(cfg.model.depth) == [1, 1, 2, 2] and cfg.augmentation.ops[0].alternate


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_each_ablation_arm_takes_out_exactly_one_trick(arm):
    whole = _flat(compose_train("experiment=fashion_fast_ablation", "without=none"))
    without = _flat(compose_train("experiment=fashion_fast_ablation", f"without={arm}"))
    changed = {k for k in whole.keys() | without.keys() if whole.get(k) != without.get(k)}
    assert changed == ARMS[arm]
    default = _flat(compose_train())  # the arm falls back to the default recipe's value
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
    monkeypatch.setattr(validate, "check", lambda cfg, job, name: checked.append(sorted(job)))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        validate.check_sweep(["experiment=fashion_fast_ablation", "without=none,stages", "seed=4"])
    assert checked == [
        sorted(["experiment=fashion_fast_ablation", "seed=4", f"without={arm}"]) for arm in ("none", "stages")
    ]


def test_preflight_refuses_a_negative_tta_shift():
    from recipelab.run import validate

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = validate._compose(["tta_shift=-1"])
        with pytest.raises(UserError, match=r"^tta_shift=-1: must be an integer >= 0"):
            validate.check(cfg, ["tta_shift=-1"])
