"""The claim experiments (issue 16): each composes, sweeps what its header says, checks in preflight, and
has its make target. No training."""

import itertools
import re
import shlex

import pytest
from omegaconf import OmegaConf

from recipelab.records.folder import CONF_DIR
from recipelab.run.validate import preflight
from recipelab.training.optim import scaled_lr
from tests.conftest import ROOT
from tests.training.composed import compose_train, flat_config

S8 = "1,2,3,4,5,6,7,8"  # the permutation test can decide for up to 6 arms (2/2^8 x 6 <= 0.05)
# experiment → (its sweep, its make target); written out here, not read from the files
CLAIMS = {
    "ablate_momentum": ({"optimizer": "sgd,momentum,nesterov", "seed": S8}, "ablate-momentum"),
    "ablate_adaptive": ({"optimizer": "nesterov,adagrad,rmsprop,adam,adamw", "seed": S8}, "ablate-adaptive"),
    "ablate_schedule": ({"scheduler": "none,plateau,step,cosine,onecycle", "seed": S8}, "ablate-schedule"),
    "ablate_bn_lr": (
        {"normalization": "batchnorm,none", "optimizer.lr": "0.03,0.3,3.0", "seed": S8},
        "ablate-bn-lr",
    ),
    "ablate_sparsity": ({"regularization": "l1,l2", "seed": S8}, "ablate-sparsity"),
    "ablate_overfitting": (
        {"regularization": "none,dropout,dropconnect", "augmentation": "none,standard", "seed": S8},
        "ablate-overfitting",
    ),
    "ablate_batch_size": ({"data.batch_size": "1,32,64,128,256,full", "seed": S8}, "ablate-batch-size"),
    "ensemble_budget": ({"arm": "single,snapshot,swa,ema", "seed": "1,2,3,4,5"}, "ablate-ensemble-budget"),
}
GROUPS = {"optimizer", "scheduler", "normalization", "regularization", "augmentation", "arm"}


def experiment_file(name):
    return OmegaConf.load(ROOT / "conf" / "experiment" / f"{name}.yaml")


def header_command(name) -> list[str]:
    """The overrides of the first `python -m recipelab.train -m experiment=<name> ...` line of its header."""
    text = (ROOT / "conf" / "experiment" / f"{name}.yaml").read_text()
    line, *_ = re.findall(
        rf"^#\s+(?:\d\. )?python -m recipelab\.train -m experiment={name}( .*)?$", text, re.M
    )
    return shlex.split(line)


def variants(name):
    """Every variant of the sweep (the seed left out) as a list of overrides."""
    params = {k: v.split(",") for k, v in CLAIMS[name][0].items() if k != "seed"}
    return [
        [f"{k}={v}" for k, v in zip(params, values, strict=True)]
        for values in itertools.product(*params.values())
    ]


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_the_experiment_sweeps_its_claim(name):
    experiment = experiment_file(name)
    assert dict(experiment.hydra.sweeper.params) == CLAIMS[name][0]
    assert compose_train(f"experiment={name}").name == name
    # the report's baseline is one of the sweep's variants
    baseline = dict(pair.split("=", 1) for pair in experiment.report.baseline.split())
    assert any(dict(o.split("=", 1) for o in v) == baseline for v in variants(name)), baseline


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_every_variant_composes_with_its_choice(name):
    for overrides in variants(name):
        cfg = compose_train(f"experiment={name}", *overrides)
        for key, value in (o.split("=", 1) for o in overrides):
            if key in GROUPS:  # the option's own values were composed, where the experiment keeps them
                path = ROOT / "conf" / key / f"{value}.yaml"
                package = "" if path.read_text().startswith("# @package _global_") else f"{key}."
                for leaf, expected in leaves(OmegaConf.load(path)):
                    if OmegaConf.select(experiment_file(name), package + leaf) is None:
                        assert OmegaConf.select(cfg, package + leaf) == expected, (overrides, leaf)
            else:
                assert str(OmegaConf.select(cfg, key)) == value, (overrides, key)


def leaves(node, prefix=""):
    """(dotted key, value) of a config file's values, its defaults list and interpolations left out."""
    for key, value in node.items_ex(resolve=False) if hasattr(node, "items_ex") else node.items():
        if key == "defaults" or (isinstance(value, str) and "${" in value):
            continue
        if OmegaConf.is_dict(value):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_the_header_command_states_the_files_budget(name):
    command = header_command(name)
    plain = [o for o in command if "," not in o]
    swept = {k: v for k, v in (o.split("=", 1) for o in command if "," in o)}
    assert swept == {k: v for k, v in CLAIMS[name][0].items() if k in swept}
    assert "seed" in swept or name == "ensemble_budget"
    assert compose_train(f"experiment={name}", *plain) == compose_train(f"experiment={name}")


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_preflight_passes_a_run_of_the_experiment(name, tmp_path):
    argv = ["train", f"experiment={name}", f"paths.log_dir={tmp_path}"]
    assert preflight(argv, CONF_DIR) == argv
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_preflight_passes_every_job_of_the_sweep(name, tmp_path):
    argv = ["train", "-m", f"experiment={name}", f"paths.log_dir={tmp_path}"]
    assert preflight(argv, CONF_DIR) == argv


def test_every_claim_has_its_make_target():
    makefile = (ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", makefile, re.M).group(1).replace("\\\n", " ").split())
    for name, (_, target) in CLAIMS.items():
        recipe = re.search(rf"^{target}: install ## .+\n\t(.+)$", makefile, re.M)
        assert recipe and target in phony, target
        runs = "bash scripts/ensemble_budget.sh" if name == "ensemble_budget" else f"experiment={name} "
        assert runs in recipe.group(1), recipe.group(1)


def test_the_gpu_recipe_is_fashion_fast_at_batch_1024_compiled_on_a_gpu():
    """Every key as fashion_fast's but the ones its header names (its lr and epochs tuned on the CPU)."""
    cpu, gpu = (flat_config(compose_train(f"experiment={e}")) for e in ("fashion_fast", "fashion_fast_gpu"))
    changed = {k for k in gpu if gpu[k] != cpu.get(k)}
    assert changed == {
        "name", "data.batch_size", "param_groups.lr_scaling", "trainer.accelerator", "compile",
        "optimizer.lr", "trainer.max_epochs",
    }  # fmt: skip
    assert scaled_lr(
        gpu["optimizer.lr"], gpu["data.batch_size"], gpu["param_groups.lr_scaling"]
    ) == pytest.approx(1.2)
    assert gpu["trainer.devices"] == 1 and gpu["param_groups.base_batch_size"] == 256
    argv = ["train", "experiment=fashion_fast_gpu", "paths.log_dir=unused"]
    assert preflight(argv, CONF_DIR) == argv
