"""The preflight's composition (``run/compose.py``): one composition of the options' defaults, the value
overrides applied by Hydra's own override step, equal to Hydra's compose of the whole command line."""

import pytest
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from recipelab.records.folder import CONF_DIR
from recipelab.run import compose, validate
from recipelab.run.compose import compose_checked, compose_job

LINES = [
    [],
    ["optimizer.lr=0.05", "seed=7", "data.batch_size=128"],
    ["optimizer=adam", "optimizer.lr=0.001", "scheduler=cosine"],
    ["experiment=fashion_fast", "data.batch_size=128", "trainer.max_epochs=2"],
    ["model=mlp", "model.hidden=[16]", "augmentation.ops=[{op: flip}]"],
    ["+note=hello", "++seed=3", "~trainer.min_epochs"],
    ["hydra.run.dir=/tmp/elsewhere", "name=other", "optimizer.lr=${data.batch_size}"],
    ["normalization=layernorm", "callbacks.progress_bar.every_n_batches=5", "hydra.job.chdir=false"],
]


def _plain(cfg) -> dict:
    tree = OmegaConf.to_container(cfg, resolve=False)
    tree["hydra"].pop("runtime")  # the cwd, versions and output dir of the composing process
    tree["hydra"]["job"].pop("override_dirname")  # Hydra's folder name from the overrides: unused here
    return tree


@pytest.mark.parametrize("overrides", LINES, ids=[" ".join(o) or "defaults" for o in LINES])
def test_compose_job_equals_hydras_compose(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg, defaults = compose_job(overrides)
        expected = compose_checked(overrides)
        choices = expected.hydra.runtime.choices  # options, and Hydra's own keys, compose the defaults
        before_values = compose_checked(
            [o for o in overrides if o.split("=")[0] in choices or o[:6] == "hydra."]
        )
    assert _plain(cfg) == _plain(expected)
    assert _plain(defaults) == _plain(before_values)
    assert _resolved(cfg) == _resolved(expected)


def _resolved(cfg) -> dict:
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def test_a_sweeps_jobs_share_the_composition_of_their_options(monkeypatch):
    calls = []
    real = compose.compose_checked
    monkeypatch.setattr(compose, "compose_checked", lambda o, n="train": calls.append(o) or real(o, n))
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        validate.check_sweep(["seed=1,2,3", "optimizer.lr=0.1,0.2", "optimizer=sgd,adam"])
    # the base (no option chosen) and one per option: not one per job (12) or two per job
    assert sorted(calls) == [[], ["optimizer=adam"], ["optimizer=sgd"]]
