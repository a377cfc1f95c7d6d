"""The learning-rate finder entry: Lightning's range test (Tuner.lr_find) on the current recipe.

python -m recipelab.lr_find [overrides]     (make lr-find ARGS="optimizer=adam")

Prints the suggested rate and saves the loss-vs-lr plot (lr_find.png) and the curve (lr_find.json) in
the run folder.
"""

from __future__ import annotations

from omegaconf import DictConfig

from recipelab.cli import hydra_entry
from recipelab.run.lr_finder import find_lr


def task(cfg: DictConfig) -> float | None:
    return find_lr(cfg)["suggestion"]


main = hydra_entry(task, "lr_find")

if __name__ == "__main__":
    main()
