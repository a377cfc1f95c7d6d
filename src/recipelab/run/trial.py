"""A search trial scored over several seeds: what Hydra's Optuna sweeper cannot do (Hydra issue 1969).

With ``seeds_per_trial=k`` each trial (one Hydra job) trains its recipe on seeds ``seed … seed + k − 1``,
each a run of its own in ``<job>/seed_<s>/`` (its own metrics.json, checkpoints and W&B run), and the
job's own ``metrics.json`` holds the mean (or IQM, ``seeds_score=iqm``) of every metric: the value the
sweeper sees.
"""

from __future__ import annotations

import copy
import statistics
from pathlib import Path

from omegaconf import DictConfig, open_dict
from scipy.stats import trim_mean

from recipelab.records import tracking

SCORES = {"mean": statistics.fmean, "iqm": lambda v: float(trim_mean(v, 0.25))}


def train_seeds(cfg: DictConfig, train) -> dict:
    """``train`` on ``cfg.seeds_per_trial`` seeds; the job's record holds each seed's and their score."""
    out, k, how = Path(cfg.paths.output_dir), cfg.seeds_per_trial, cfg.get("seeds_score", "mean")
    if how not in SCORES:
        raise ValueError(f"seeds_score={how!r}: choose {' or '.join(SCORES)}")
    records = []
    for seed in range(cfg.seed, cfg.seed + k):
        member = copy.deepcopy(cfg)
        with open_dict(member):
            member.seed = seed
            member.paths.output_dir = str(out / f"seed_{seed}")
            member.name = f"{cfg.name}_seed{seed}"
        records.append(train(member))
    keys = set.intersection(*(set(r["metrics"]) for r in records))
    record = {
        "name": cfg.name,
        "group": tracking.run_group(cfg.name),
        "seed": cfg.seed,
        "seeds": [r["seed"] for r in records],
        "seeds_score": how,
        "groups": tracking.group_choices(),
        "status": "completed",
        "metrics": {key: SCORES[how]([r["metrics"][key] for r in records]) for key in sorted(keys)},
        "per_seed": {str(r["seed"]): r["metrics"] for r in records},
        "run_dir": str(out),
        "overrides": tracking.task_overrides(),
        "provenance": tracking.provenance(),
        "train_time_s": sum(r.get("train_time_s") or 0 for r in records),
    }
    tracking.write_json(out / "metrics.json", record)
    return record
