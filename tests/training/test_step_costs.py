"""What the per-step savings of issue 17 keep: the epoch's training metrics and a run's profiler."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.profilers import SimpleProfiler

from recipelab.build import build_run
from recipelab.training.profiler import QuietProfiler
from tests.training.composed import compose_train


def test_the_epoch_training_metrics_match_the_network_on_the_training_set(tmp_path):
    """With an lr too small to move a weight (no batch norm, no augmentation, fp32), the logged epoch
    loss and accuracy are the loss and accuracy of the unchanged network on the training images."""
    cfg = compose_train(
        "normalization=none", "augmentation=none", "optimizer.lr=1e-30", "scheduler=none",
        "trainer.precision=32", "logger=none", "trainer=quiet", "trainer.max_epochs=1",
        "data.train_size=200", "data.val_size=100", "data.batch_size=50", "trainer.limit_test_batches=1",
    )  # fmt: skip
    cfg.paths.output_dir = str(tmp_path)
    run = build_run(cfg)
    before = {k: v.clone() for k, v in run.module.model.state_dict().items()}
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert all(torch.equal(before[k], v) for k, v in run.module.model.state_dict().items())
    images, labels = run.datamodule.splits["train"]
    with torch.no_grad():
        logits = run.module(run.datamodule.prepare(images))
    # four equal batches: the mean of the batch losses is the loss over all 200 images
    loss = F.cross_entropy(logits, labels, label_smoothing=cfg.regularization.label_smoothing)
    logged = run.trainer.callback_metrics
    assert float(logged["train/loss_epoch"]) == pytest.approx(float(loss), rel=1e-5)
    assert float(logged["train/acc"]) == pytest.approx(float((logits.argmax(-1) == labels).float().mean()))


def test_a_run_without_a_profiler_gets_the_quiet_one_and_a_chosen_profiler_is_kept(tmp_path):
    quiet = build_run(compose_train("logger=none", "trainer=quiet", f"paths.output_dir={tmp_path}"))
    assert type(quiet.trainer.profiler) is QuietProfiler
    with quiet.trainer.profiler.profile("outer") as a, quiet.trainer.profiler.profile("inner") as b:
        assert a is b is None  # re-entrant, records nothing
    chosen = build_run(compose_train("logger=none", "debug=profiler", f"paths.output_dir={tmp_path}"))
    assert type(chosen.trainer.profiler) is SimpleProfiler


def test_the_checkpoints_state_key_is_lightnings_so_old_checkpoints_resume():
    """The once-built state key is the string Lightning's own ModelCheckpoint builds for the same
    settings: checkpoints written before (or by Lightning's class) restore into these callbacks."""
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint as Lightnings

    from recipelab.training.reliability import ModelCheckpoint

    cfg = compose_train("callbacks=default")
    for name, node in cfg.callbacks.items():
        if node._target_.endswith("ModelCheckpoint"):
            ours = instantiate(node, dirpath="unused")
            settings = {k: v for k, v in node.items() if k not in ("_target_", "dirpath")}
            assert isinstance(ours, ModelCheckpoint), name
            assert ours.state_key == Lightnings(dirpath="unused", **settings).state_key, name


def test_lightning_calls_no_inherited_no_op_hook_of_a_runs_callbacks(tmp_path, monkeypatch):
    """Each per-step hook a callback inherits from Lightning's ``Callback`` is counted when called: none
    is, while a hook the callback defines is kept; undone, the inherited ones are called."""
    from lightning.pytorch import Callback

    from recipelab.training.profiler import STEP_HOOKS

    calls = []
    for hook in STEP_HOOKS:
        monkeypatch.setattr(Callback, hook, lambda self, *a, _hook=hook, **k: calls.append((self, _hook)))
    overrides = [
        "logger=csv",
        "trainer=quiet",
        "trainer.max_epochs=1",
        "data.train_size=200",
        "data.val_size=100",
    ]
    overrides += [
        "data.batch_size=50",
        "model=mlp",
        "trainer.limit_test_batches=1",
        f"paths.output_dir={tmp_path}",
    ]
    run = build_run(compose_train(*overrides))
    divergence = next(c for c in run.callbacks if type(c).__name__ == "StopOnDivergence")
    assert divergence.on_before_backward is not None and divergence.on_after_backward is None
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert calls == []
    undone = build_run(compose_train(*overrides, f"paths.output_dir={tmp_path / 'undone'}"))
    for callback in undone.trainer.callbacks:
        for hook in STEP_HOOKS:
            vars(callback).pop(hook, None)
    undone.trainer.fit(undone.module, datamodule=undone.datamodule)
    assert len(calls) >= 4 * len(undone.trainer.callbacks)  # 4 steps; each callback inherits at least one
