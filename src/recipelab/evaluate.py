"""The evaluation entry: test one checkpoint, rebuilt from the config stored in it.

    python -m recipelab.evaluate ckpt_path=<checkpoint file | run folder> [split=test|val|train]
                                 [tta_flip=...] [tta_shift=...] [temperature=true|false]

Prints accuracy, NLL, ECE and Brier score (the metrics of training's test) and, with ``temperature``, the
same after temperature scaling fitted on the validation split (``<split>/ts/*`` and ``temperature``);
writes evaluate.json into the run folder and logs a W&B run (job_type=evaluate) in the run's group.
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from recipelab.cli import hydra_entry
from recipelab.records import summary
from recipelab.results.evaluation import evaluate


def task(cfg: DictConfig) -> None:
    start = time.time()
    result = evaluate(cfg)
    summary.emit(summary.evaluate_lines(result, summary.written(result["out_dir"], start)))


main = hydra_entry(task, "evaluate", preflight=False)

if __name__ == "__main__":
    main()
