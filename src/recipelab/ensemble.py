"""The ensemble entry: evaluate checkpoints alone and together on the test set.

    python -m recipelab.ensemble source=<run folder | sweep folder | glob | [ckpt,ckpt,...]>
                                 [combine=mean|vote|weights] [tta_flip=...] [tta_shift=...] [log_wandb=false]

Every test batch goes through all members in one pass over the data. Writes ensemble.json, ensemble.md and
ensemble_curve.png into the source folder, and logs a W&B run (job_type=ensemble) in the source's group.
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from recipelab.cli import hydra_entry
from recipelab.records import summary
from recipelab.results import ensemble_output
from recipelab.results.ensemble import evaluate


def task(cfg: DictConfig) -> None:
    start = time.time()
    result = evaluate(cfg)
    print(ensemble_output.write(result, cfg.log_wandb))
    summary.emit(summary.ensemble_lines(result, summary.written(result["out_dir"], start)))


main = hydra_entry(task, "ensemble", preflight=False)

if __name__ == "__main__":
    main()
