"""Bad configs stop before any work: one line naming the key and what is allowed, exit 2, nothing made."""

from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from recipelab.errors import UserError
from recipelab.records.folder import CONF_DIR
from recipelab.run.validate import RUN_GROUPS, preflight
from tests.conftest import train_cli

UNSYNCED = ["trainer.sync_batchnorm=false", "data.batch_size=100"]
BAD = [
    # (overrides, what the one line must name)
    (["optimizer=adamx"], "optimizer=adamx"),  # unknown group option: Hydra's choices are listed
    (["optimizer.lrr=0.1"], "optimizer.lrr"),  # a key no option has
    (["optimizer.lr=fast"], "optimizer.lr='fast'"),  # wrong types, checked against the option's default
    (["trainer.max_epochs=1.5"], "trainer.max_epochs=1.5"),
    (["seed=[1,2]"], "seed="),
    (["optimizer.lr=0"], "optimizer.lr=0"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1"),
    (["data.batch_size=0"], "data.batch_size=0"),
    (["data.batch_size=-5"], "data.batch_size=-5"),
    (["data.train_size=500", "data.batch_size=501"], "data.batch_size=501"),  # larger than the training set
    (["data.val_size=59990", "data.batch_size=11"], "data.batch_size=11"),
    (["regularization.dropout=1.0"], "regularization.dropout=1.0"),  # probabilities outside [0, 1)
    (["regularization.label_smoothing=-0.1"], "regularization.label_smoothing=-0.1"),
    (["augmentation.ops=[{op: flip, p: 1.5}]"], "p=1.5"),
    (["optimizer.weight_decay=-1e-4"], "optimizer.weight_decay=-0.0001"),  # negative penalties
    (["+regularization.l2=-1.0"], "regularization.l2=-1.0"),  # a penalty added later is covered by its group
    (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
    (["callbacks.progress_bar.every_n_batches=0"], "callbacks.progress_bar.every_n_batches=0"),
    (["normalization.eps=0"], "normalization.eps=0"),
    (["augmentation.ops=[{op: rotate}]"], "'rotate'"),  # unknown augmentation op, with the known ones
    (["data.root=/no/such/folder"], "data.root=/no/such/folder"),
    (["ckpt_path=/no/such/last.ckpt"], "ckpt_path=/no/such/last.ckpt"),
    (["ckpt_path=last", "name=never_ran"], "ckpt_path=last"),
    (["-m", "optimizer.lr=0.1,-1"], "optimizer.lr=-1"),  # every job of a sweep is checked
    (["optimizer.lr=${nope}"], "optimizer.lr: does not resolve"),  # an interpolation to nothing
    (["+callbacks.x._target_=nope.Nope"], "callbacks.x._target_=nope.Nope: cannot be imported"),
    (["-m", "seed=1,2", "optimizer.lrr=0.1,0.2"], "optimizer.lrr"),  # a sweep over a key that does not exist
    (["~optimizer"], "~optimizer"),  # a part the run is built from, removed
    (["optimizer=adam", "+optimizer.momentum=0.9"], "optimizer=adam: cannot be built"),  # not Adam's
    (["optimizer=[sgd,adam]"], "optimizer=[sgd,adam]: cannot be built"),  # two options merged: SGD's momentum
    (["+scheduler.build.warmup=3"], "scheduler=onecycle: cannot be built"),
    (["-m", "seed=1,2", "~scheduler"], "~scheduler"),
    (["model=mlp", "data.batch_size=1"], "data.batch_size=1: batch norm"),  # BatchNorm1d: one value a channel
    (["model=mlp", "data.train_size=601", "data.batch_size=100"], "data.batch_size=100: an epoch's last"),
    # under DDP: data.batch_size is the global batch, shared by the processes, each with its shard
    (
        ["trainer=ddp_cpu", "data.batch_size=3"],
        "data.batch_size=3: under DDP it must be an integer divisible",
    ),
    (["trainer=ddp", "trainer.devices=[0,1,2]", "data.batch_size=128"], "(3 = trainer.devices"),
    (["trainer=ddp_cpu", "trainer.num_nodes=2", "data.batch_size=6"], "(4 = trainer.devices"),
    (["trainer=ddp", "trainer.devices='0,1,2'", "data.batch_size=128"], "(3 = trainer.devices"),
    # Lightning's CPU accelerator takes a count only: its own error came after the run folder was made
    (["trainer.devices=[0]"], "trainer.devices=[0]: on the CPU (trainer.accelerator=cpu) it is a count"),
    (["trainer=ddp_cpu", "trainer.devices='0,1'"], "trainer.devices='0,1': on the CPU"),
    (["trainer.devices=-1"], "trainer.devices=-1: on the CPU"),
    (["trainer=ddp_cpu", "data.batch_size=full", "data.train_size=601"], "data.batch_size=full: under DDP"),
    (["trainer.devices=two"], "trainer.devices='two': must be a count"),
    (["launcher=slurm", "trainer=ddp", "trainer.devices=[0,1]"], "hydra.launcher.tasks_per_node: does not"),
    (
        ["model=resnet", "model.width=4", "trainer=cpu"],
        "model.stages.1.0.shortcut (a 1x1 stride-2 convolution of 4",
    ),
    (["launcher=slurm", "trainer=ddp", "trainer.devices=auto"], "Value 'auto' of type 'str' could not be"),
    # Lightning's own errors came after the run folder was made: a seed numpy refuses, and max_epochs=null
    # with max_steps (the schedule's length read an epoch's batches before Lightning had counted them)
    (["seed=-1"], "seed=-1: must be an integer in [0, 2^32)"),
    (["seed=4294967296"], "seed=4294967296: must be an integer in [0, 2^32)"),
    (["trainer.max_epochs=null", "+trainer.max_steps=4"], "trainer.max_epochs=null: must be an integer >= 1"),
    (["trainer.max_epochs=[1,2]"], "trainer.max_epochs=[1, 2]: must be an integer"),  # a list, as given
    (
        ONE_EACH := ["trainer=ddp_cpu", "model=mlp", UNSYNCED[0], "data.batch_size=2"],
        "one image a batch in each of the 2",
    ),
    (
        LAST_EACH := ["trainer=ddp_cpu", "model=mlp", "data.train_size=602", *UNSYNCED],
        "hold 1 image in each of the 2",
    ),
]


@pytest.mark.parametrize(("overrides", "named"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_value_is_one_line_naming_the_key(overrides, named, tmp_path):
    with pytest.raises(UserError) as err:
        preflight(["train", f"paths.log_dir={tmp_path}", *overrides], CONF_DIR)
    message = str(err.value)
    assert "\n" not in message and named in message, message
    assert list(tmp_path.iterdir()) == []


def test_the_groups_a_run_needs_are_the_train_configs_chosen_defaults():
    defaults = OmegaConf.load(Path(CONF_DIR) / "train.yaml").defaults
    chosen = {k for d in defaults if isinstance(d, DictConfig) for k, v in d.items() if v is not None}
    assert set(RUN_GROUPS) == chosen


def test_unknown_option_lists_the_choices(tmp_path):
    with pytest.raises(
        UserError, match=r"choose from \['none', 'onecycle', 'cosine'\]|choose from \[.*'cosine'"
    ):
        preflight(["train", "scheduler=warmup"], CONF_DIR)


def test_good_configs_pass_unchanged():
    argv = ["train", "optimizer.lr=0.05", "data.batch_size=128", "regularization.dropout=0.1", "seed=7"]
    assert preflight(argv, CONF_DIR) == argv
    sweep = ["train", "-m", "seed=1,2", "optimizer.lr=0.1,0.2"]
    assert preflight(sweep, CONF_DIR) == sweep
    # one image a batch: batch norm over a convolution's pixels, or another norm, trains on it
    for one in (["data.batch_size=1"], ["model=mlp", "normalization=layernorm", "data.batch_size=1"]):
        assert preflight(["train", *one], CONF_DIR) == ["train", *one]
    last_of_two = ["train", "model=mlp", "data.train_size=602", "data.batch_size=100"]
    assert preflight(last_of_two, CONF_DIR) == last_of_two
    # under DDP with synchronized batch norm (trainer=ddp's default) the statistics are the global batch's
    full = ["trainer=ddp_cpu", "data.batch_size=full", "data.train_size=600"]  # 300 images in each process
    for devices in (
        ["trainer=ddp", "trainer.devices=[0,1]"],
        ["trainer=gpu", "trainer.devices=auto"],
        ["trainer=ddp_cpu", "trainer.devices='2'"],
        ["trainer.devices=auto"],
        ["launcher=slurm", "trainer=ddp", "trainer.devices='2'"],
        ["model=resnet", "model.width=4", "trainer=cpu", "channels_last=false"],  # torch's kernel that works
        ["model=resnet", "model.width=4"],  # bf16 autocast (trainer=default)
        ["model=resnet", "model.width=8", "trainer=cpu"],
        full,
    ):
        assert preflight(["train", *devices], CONF_DIR) == ["train", *devices]  # Lightning's other forms
    for synced in (ONE_EACH, LAST_EACH):
        argv = ["train", *(o for o in synced if o != UNSYNCED[0])]
        assert preflight(argv, CONF_DIR) == argv


@pytest.fixture
def typo_experiment(tmp_path):
    experiments = tmp_path / "conf" / "experiment"
    experiments.mkdir(parents=True)
    (experiments / "typo.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      optimizer.learning_rate: 0.1,0.2\n"
    )
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]"


def test_experiment_sweeping_a_missing_key_is_refused(typo_experiment, tmp_path):
    for mode in (["-m"], []):
        with pytest.raises(UserError, match="optimizer.learning_rate"):
            preflight(
                ["train", *mode, "experiment=typo", typo_experiment, f"paths.log_dir={tmp_path}/logs"],
                CONF_DIR,
            )
    assert not (tmp_path / "logs").exists()


def test_cli_exits_2_with_one_line_and_creates_nothing(tmp_path):
    logs = tmp_path / "logs"
    _assert_refused(train_cli(logs, "data.batch_size=0", "logger=wandb"), logs, "data.batch_size=0")
    _assert_refused(train_cli(logs, "optimizer.lr=${nope}"), logs, "optimizer.lr: does not resolve")


@pytest.mark.slow
def test_cli_refuses_a_bad_sweep_and_an_unknown_option(typo_experiment, tmp_path):
    logs = tmp_path / "logs"
    _assert_refused(
        train_cli(logs, "-m", "experiment=typo", typo_experiment), logs, "optimizer.learning_rate"
    )
    _assert_refused(train_cli(logs, "optimizer=adamx"), logs, "optimizer=adamx")


def _assert_refused(run, logs, named):
    assert run.proc.returncode == 2, run.proc.stderr[-2000:]
    lines = run.proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], run.proc.stderr
    assert "Traceback" not in run.proc.stderr + run.proc.stdout
    assert not logs.exists()  # no run or sweep folder, hence no W&B run (it lives in the run folder)
