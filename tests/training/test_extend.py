"""Extending a finished run to more epochs from its last.ckpt: every schedule works (a schedule whose
shape depends on the run's length is rebuilt for the new length and continues from the step reached)."""

from pathlib import Path

import pytest
import torch

from recipelab.build import build_run
from tests.training.composed import compose_train

CONF = Path(__file__).resolve().parents[2] / "conf" / "scheduler"
SCHEDULERS = sorted(p.stem for p in CONF.glob("*.yaml"))
TINY = [
    "logger=none",
    "trainer=quiet",
    "data.train_size=200",
    "data.val_size=100",
    "data.batch_size=50",
    "model.widths=[4,8]",
    "trainer.limit_test_batches=1",
    "callbacks.step_checkpoint=null",
]


def fit(tmp_path, scheduler: str, epochs: int, ckpt_path=None):
    cfg = compose_train(*TINY, f"scheduler={scheduler}", f"trainer.max_epochs={epochs}")
    cfg.paths.output_dir = str(tmp_path)
    run = build_run(cfg)
    run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=ckpt_path)
    return run


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_one_epoch_run_extends_to_two_epochs(tmp_path, scheduler):
    fit(tmp_path, scheduler, 1)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    extended = fit(tmp_path, scheduler, 2, ckpt_path=str(last))
    assert extended.trainer.global_step == 8 and extended.trainer.current_epoch == 2
    straight = fit(tmp_path / "straight", scheduler, 2)  # the two-epoch schedule from the start
    lr = [g["lr"] for g in extended.trainer.optimizers[0].param_groups]
    expected = [g["lr"] for g in straight.trainer.optimizers[0].param_groups]
    # rebuilt for 2 epochs and replayed to step 4 (plateau: restored, its state is the metric's history):
    # after step 8 the rate is where the two-epoch run's ends
    assert lr == pytest.approx(expected, rel=1e-6)
