"""The evaluation entry: test one checkpoint, rebuilt from the config stored in it.

    python -m recipelab.evaluate ckpt_path=<checkpoint file | run folder> [split=test|val] [tta_flip=...]

Prints accuracy, NLL, ECE and Brier score (the metrics of training's test), writes evaluate.json into the
run folder and logs a W&B run (job_type=evaluate) in the run's group.
"""

from __future__ import annotations

from omegaconf import DictConfig

from recipelab.cli import hydra_entry
from recipelab.results.evaluation import evaluate


def task(cfg: DictConfig) -> None:
    result = evaluate(cfg)
    print(f"{result['checkpoint']} ({result['split']}, tta_flip={result['tta_flip']}):")
    for key, value in result["metrics"].items():
        print(f"  {key}: {value:.4f}")


main = hydra_entry(task, "evaluate", preflight=False)

if __name__ == "__main__":
    main()
