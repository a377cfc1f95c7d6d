"""The learning-rate range test of a recipe: Lightning's ``Tuner.lr_find`` on the run ``build_run`` makes.

The finder sets one rate for every param group: lr_scale rules do not apply during it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig

from recipelab.build import build_run
from recipelab.records import tracking
from recipelab.run.job import print_config


def find_lr(cfg: DictConfig) -> dict:
    """Runs the range test; saves lr_find.png (loss vs lr) and lr_find.json in the run folder."""
    out = Path(cfg.paths.output_dir)
    print_config(cfg)
    run = build_run(cfg, lean=False, logger=False, enable_checkpointing=False, callbacks=[])
    finder = Tuner(run.trainer).lr_find(
        run.module, datamodule=run.datamodule, update_attr=False, **cfg.lr_find
    )
    suggestion = finder.suggestion()
    matplotlib.use("Agg")  # files only, no display
    finder.plot(suggest=suggestion is not None).savefig(out / "lr_find.png", dpi=120)
    record = {"suggestion": suggestion, "optimizer": tracking.group_choices()["optimizer"], **finder.results}
    tracking.write_json(out / "lr_find.json", record)
    print(
        f"suggested lr: {suggestion:.3g}" if suggestion else "no suggestion: too few points before divergence"
    )
    print(f"plot: {out / 'lr_find.png'}")
    return record
