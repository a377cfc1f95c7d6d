"""The evaluation entry: test one checkpoint, rebuilt from the config stored in it.

    python -m recipelab.evaluate ckpt_path=<checkpoint file | run folder> [split=test|val|train]
                                 [tta_flip=...] [tta_shift=...] [temperature=true|false]

Prints accuracy, NLL, ECE and Brier score (the metrics of training's test) and, with ``temperature``, the
same after temperature scaling fitted on the validation split (``<split>/ts/*`` and ``temperature``);
writes evaluate.json into the run folder and logs a W&B run (job_type=evaluate) in the run's group.
"""

from __future__ import annotations

from omegaconf import DictConfig

from recipelab.cli import hydra_entry
from recipelab.results.evaluation import evaluate


def task(cfg: DictConfig) -> None:
    result = evaluate(cfg)
    views = f"tta_flip={result['tta_flip']}, tta_shift={result['tta_shift']}"
    print(f"{result['checkpoint']} ({result['split']}, {views}):")
    for key, value in result["metrics"].items():
        print(f"  {key}: {value:.4f}")
    if result["temperature_note"]:
        print(result["temperature_note"])


main = hydra_entry(task, "evaluate", preflight=False)

if __name__ == "__main__":
    main()
