"""`make bench`: the template against the simplest correct training loop, on this machine.

    python -m recipelab.bench [--steps N] [--rounds R] [--full] [--out bench.json] [overrides ...]
    python -m recipelab.bench --race [--seeds 5] [--budget 180] [--out bench.json] [overrides ...]
    python -m recipelab.bench --fused 6 [--epochs 3] [--out bench.json] [overrides ...]
    python -m recipelab.bench --startup [--out bench.json] [overrides ...]

1. overhead: steady-state images/s of `python -m recipelab.train` (full path: config, DataModule,
   augmentation, LightningModule, logging, checkpointing, W&B offline) against a plain PyTorch loop with
   the same model, data tensors, augmentation, optimizer, schedule, precision and seed. The two alternate
   step by step inside the template's process (a callback runs one plain step at the start of every
   template step and takes its time out of the template's), so that the machine's noise, which on a
   shared 2-core VM moves whole runs by ±25%, hits both alike. Each round is a fresh process.
2. pipeline: images/s of batching + augmentation alone, against images/s of training.
   The same with a tiny network (TINY: Python dominates its step) gives the overhead floor: the
   template's extra milliseconds a step, for the tiny network and for the recipe's own; and, its rounds
   alternated with the tiny network's, the same floor of Lightning's loop alone (``benchmark/bare.py``:
   the plain step under Lightning's manual optimization, nothing of the template's): the part of the
   floor that no change inside Lightning removes.
3. start-up: seconds from the command to the first training step (median over every round's launch), and
   the part of them beyond ``import torch, lightning`` (its median over ``--rounds`` fresh processes): what
   the template itself adds: its imports, config, data, the run's set-up.
4. (--full) time to accuracy: the default recipe on the full data; when val/acc first reached 0.92 and
   its final test accuracy.
5. (--race) time to accuracy as airbench reports it: seeds 1..n of the recipe trained in full (one
   sweep, kept under logs/race/<name>/ for the report); the test accuracies' mean, std and min, the
   training times, and when the seeds' mean val/acc first reached 0.93 and 0.94. It is written under
   ``race.<name>`` into the --out file, beside the figures already there (the other measures are skipped).
6. (--fused K) seeds fused against separate jobs: a sweep of seeds 1..K trained as K jobs, then as one
   chunk (``seeds_per_process=K``); wall times and training images/s of each, under ``fused_seeds``.
7. (--startup) where a run's seconds before training go: each set-up stage's seconds, each package's
   import seconds, the first step against the second, CUDA's initialisation on a GPU, under
   ``startup_profile``.
Timings are printed and written to bench.json (each run keeps the others' figures in it); nothing here
is asserted. Take them on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from recipelab.benchmark.fused import fused_vs_separate
from recipelab.benchmark.plain import steady_rates
from recipelab.benchmark.race import run_race, summarize
from recipelab.benchmark.runs import compose_cfg, import_seconds, template_run, time_to_accuracy
from recipelab.benchmark.startup import profile_startup

# the overhead floor's network: one 16-unit hidden layer, so that the per-step Python cost dominates
TINY = ["model=mlp", "model.hidden=[16]"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=120, help="training steps per round (each contender)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--full", action="store_true", help="also time the default recipe to 0.92")
    parser.add_argument("--out", default="bench.json")
    parser.add_argument("--race", action="store_true", help="n seeds trained in full: time to accuracy")
    parser.add_argument("--seeds", type=int, default=5, help="--race: seeds 1..n")
    parser.add_argument("--budget", type=float, default=180.0, help="--race: training seconds allowed")
    parser.add_argument("--name", default=None, help="--race: its name (default: the experiment's)")
    parser.add_argument("--fused", type=int, default=0, help="K seeds fused against K separate jobs")
    parser.add_argument("--epochs", type=int, default=3, help="--fused: epochs of each seed")
    parser.add_argument("--startup", action="store_true", help="where the seconds before training go")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both contenders")
    args = parser.parse_args(argv)
    if args.race:
        return race(args)
    if args.fused:
        with tempfile.TemporaryDirectory() as tmp:
            result = fused_vs_separate(args.overrides, args.fused, args.epochs, Path(tmp))
        print(json.dumps(result, indent=2))
        return write_merged(Path(args.out), {"fused_seeds": result})

    if args.startup:
        with tempfile.TemporaryDirectory() as tmp:
            result = profile_startup(args.overrides, Path(tmp))
        print(json.dumps(result, indent=2))
        return write_merged(Path(args.out), {"startup_profile": result})

    with tempfile.TemporaryDirectory() as tmp:
        recipe = round_settings(args, args.overrides)
        batch = recipe[1]
        rounds = [
            overhead_round(args, recipe, Path(tmp), f"recipe round {r + 1}") for r in range(args.rounds)
        ]
        tiny_settings, tiny, bare = round_settings(args, [*args.overrides, *TINY]), [], []
        for r in range(args.rounds):  # alternated: the machine's speed moves over minutes
            tiny.append(overhead_round(args, tiny_settings, Path(tmp), f"tiny round {r + 1}"))
            label = f"tiny round {r + 1}, Lightning's loop alone"
            bare.append(overhead_round(args, tiny_settings, Path(tmp), label, bare=True))
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        # the import's own time moves by ±0.3 s between processes here: its median over as many processes
        base = statistics.median(import_seconds("import torch, lightning") for _ in range(args.rounds))
        # over the rounds of both networks: the same launch, and twice the processes
        launch = statistics.median(r["startup_s"] for r in [*rounds, *tiny])
        result = {
            "machine": {"cpus": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
            "recipe": args.overrides,
            "batch_size": batch,
            "steps_per_round": args.steps,
            "rounds": rounds,
            "rounds_tiny": tiny,
            "rounds_lightning": bare,
            "overhead": {
                "plain_img_s": med["plain_img_s"],
                "template_img_s": med["template_img_s"],
                "ratio": med["ratio"],  # the median of the rounds' ratios
                "goal": 0.97,
            },
            # the template's own milliseconds a step over the plain loop (median of the rounds): with a
            # network so small that Python dominates, and with the recipe's own network
            "overhead_floor_ms": {
                "tiny": statistics.median(r["extra_ms"] for r in tiny),
                "cnn": med["extra_ms"],
                # the tiny network's step under Lightning's loop with nothing of the template's
                # (recipelab.benchmark.bare): what no change inside Lightning can remove
                "lightning": statistics.median(r["extra_ms"] for r in bare),
                # the template's own part: the median of the alternated rounds' differences
                "beyond_lightning": statistics.median(
                    t["extra_ms"] - b["extra_ms"] for t, b in zip(tiny, bare, strict=True)
                ),
                "tiny_network": TINY,
                "goal_tiny": 0.3,
            },
            "pipeline": {
                "pipeline_img_s": med["pipeline_img_s"],
                "train_img_s": med["plain_img_s"],
                "ratio": med["pipeline_img_s"] / med["plain_img_s"],
                "goal": 20,
            },
            "startup": {
                "to_first_step_s": launch,
                "imports_s": import_seconds("import recipelab.train"),
                "torch_lightning_import_s": base,
                "beyond_torch_lightning_s": launch - base,
                "goal_beyond_torch_lightning_s": 0.8,
            },
        }
        if args.full:
            result["time_to_accuracy"] = time_to_accuracy(Path(tmp), 0.92, args.overrides)
    write_merged(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("rounds", "recipe")}, indent=2))
    return result


def round_settings(args, recipe: list[str]) -> tuple[list[str], int]:
    """The overrides of one round's run (one epoch, or as many steps as asked) and its batch size."""
    cfg = compose_cfg(recipe)
    batch = cfg.data.batch_size
    per_epoch = -(-(cfg.data.train_size or cfg.data.train_count - cfg.data.val_size) // batch)
    epochs = max(1, -(-args.steps // per_epoch))
    overrides = [
        *recipe,
        f"trainer.max_epochs={epochs}",
        f"trainer.limit_train_batches={min(args.steps, per_epoch)}",
        "trainer.limit_val_batches=1",
    ]
    return overrides, batch


def overhead_round(args, settings: tuple[list[str], int], tmp: Path, label: str, bare: bool = False) -> dict:
    """One fresh process of the template (or, ``bare``, of Lightning's loop alone), each of its steps
    interleaved with a plain-loop step."""
    overrides, batch = settings
    record = template_run(overrides, tmp, bare=bare)
    plain, template = steady_rates(record, batch, args.warmup)
    result = {
        "plain_img_s": plain,
        "template_img_s": template,
        "ratio": template / plain,
        "extra_ms": 1000 * batch * (1 / template - 1 / plain),
        "pipeline_img_s": record["pipeline_img_s"],
        "startup_s": record["startup_s"],
    }
    print(
        f"{label}: plain {plain:.0f} img/s, {'Lightning' if bare else 'template'} {template:.0f} img/s, "
        f"ratio {template / plain:.3f}, +{result['extra_ms']:.2f} ms a step, "
        f"start-up {record['startup_s']:.1f} s",
        flush=True,
    )
    return result


def race(args) -> dict:
    name = args.name or compose_cfg(args.overrides).name
    log_dir = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("paths.log_dir=")), None)
    records = run_race(args.overrides, args.seeds, f"race_{name}", log_dir)
    result = summarize(records, budget_s=args.budget)
    result["recipe"] = args.overrides
    whole = write_merged(Path(args.out), {"race": {name: result}})
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=2))
    return whole


def write_merged(out: Path, update: dict) -> dict:
    """Writes ``update`` into the --out file over what is there: the overhead run replaces its own
    measures and keeps the races; a race replaces only its own ``race.<name>`` entry."""
    whole = json.loads(out.read_text()) if out.is_file() else {}
    races = {**whole.get("race", {}), **update.get("race", {})}
    whole.update(update)
    if races:
        whole["race"] = races
    out.write_text(json.dumps(whole, indent=2) + "\n")
    return whole


if __name__ == "__main__":
    main()
