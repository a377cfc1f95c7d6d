"""The learning-rate finder: Lightning's range test (Tuner.lr_find) on the current recipe.

python -m recipelab.lr_find [overrides]     (make lr-find ARGS="optimizer=adam")

Prints the suggested rate and saves the loss-vs-lr plot (lr_find.png) and the curve (lr_find.json) in
the run folder. The finder sets one rate for every param group: lr_scale rules do not apply during it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import lightning as L
import matplotlib
from hydra.utils import instantiate
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig

from recipelab import tracking
from recipelab.errors import UserError
from recipelab.train import CONF_DIR, build_datamodule, build_module, print_config
from recipelab.training.optim import check_options


def find_lr(cfg: DictConfig) -> dict:
    out = Path(cfg.paths.output_dir)
    print_config(cfg)
    check_options(cfg.optimizer, cfg.data.batch_size)
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.batch_size)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False, callbacks=[])
    finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False, **cfg.lr_find)
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


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="lr_find")
def main(cfg: DictConfig) -> float | None:
    try:
        return find_lr(cfg)["suggestion"]
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
