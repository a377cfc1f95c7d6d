"""`make bench`: the template against the simplest correct training loop, on this machine.

    python -m recipelab.bench [--steps N] [--rounds R] [--full] [--out bench.json] [overrides ...]

1. overhead: steady-state images/s of `python -m recipelab.train` (full path: config, DataModule,
   augmentation, LightningModule, logging, checkpointing, W&B offline) against a plain PyTorch loop with
   the same model, data tensors, augmentation, optimizer, schedule, precision and seed. Rounds alternate
   the two so that machine noise hits both alike.
2. pipeline: images/s of batching + augmentation alone, against images/s of training.
3. start-up: seconds from the command to the first training step, and the share spent importing.
4. (--full) time to accuracy: the default recipe on the full data; when val/acc first reached 0.92 and
   its final test accuracy.
Timings are printed and written to bench.json; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from recipelab.data import build_augmentation, prepare_batch
from recipelab.data.fashion_mnist import TensorBatchLoader
from recipelab.train import CONF_DIR, build_model, build_param_groups


def sync_time(device: torch.device) -> float:
    """Wall-clock time once the device has finished its queued work (GPU steps run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.time()


QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


class StepTimer(L.Callback):
    """Records the wall-clock time at the start of every training batch and writes them on train end."""

    def __init__(self, path: str):
        self.path, self.times, self.epochs = path, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.times.append(sync_time(pl_module.device))
        self.epochs.append(trainer.current_epoch)

    def on_train_end(self, trainer, pl_module):
        Path(self.path).write_text(json.dumps({"times": self.times, "epochs": self.epochs}))


def steady_rate(times: list[float], epochs: list[int], batch_size: int, warmup: int) -> float:
    """images/s over consecutive steps of one epoch after `warmup` steps (epoch boundaries excluded)."""
    gaps = [b - a for a, b, ea, eb in zip(times, times[1:], epochs, epochs[1:], strict=False) if ea == eb]
    gaps = gaps[warmup:]
    return batch_size * len(gaps) / sum(gaps)


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=overrides)


def plain_loop(cfg, steps: int) -> tuple[list[float], float]:
    """The simplest correct loop with the recipe of `cfg`; returns step start times and pipeline images/s."""
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    dm = instantiate(cfg.data, _partial_=True)(shuffle_seed=cfg.seed)
    dm.setup()
    images, labels = (t.to(device) for t in dm.splits["train"])
    model = build_model(cfg)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    opt = instantiate(cfg.optimizer)(build_param_groups(cfg, dm.batch_size)(model))
    per_epoch = -(-len(labels) // dm.batch_size)
    sched = instantiate(cfg.scheduler.build)(
        opt, total_steps=per_epoch * cfg.trainer.max_epochs, steps_per_epoch=per_epoch
    )
    aug = build_augmentation(cfg.augmentation.ops, seed=cfg.seed)
    loader = TensorBatchLoader(images, labels, dm.batch_size, shuffle=True, seed=cfg.seed)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    times = []
    while len(times) < steps:
        for xb, yb in loader:
            times.append(sync_time(device))
            x = prepare_batch(xb, aug).contiguous(memory_format=fmt)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), yb, label_smoothing=cfg.regularization.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if len(times) >= steps:
                break
        loader.sampler.set_epoch(loader.sampler.epoch + 1)
    # the pipeline alone: batching + uint8→float + augmentation, a full pass
    start, n = sync_time(device), 0
    for xb, _ in loader:
        prepare_batch(xb, aug)
        n += len(xb)
    return times, n / (sync_time(device) - start)


def template_run(overrides: list[str], workdir: Path) -> dict:
    """`python -m recipelab.train` in a subprocess with a StepTimer; returns its step times and start-up."""
    timer_file = workdir / f"steps-{time.time_ns()}.json"
    args = [
        sys.executable,
        "-m",
        "recipelab.train",
        f"paths.log_dir={workdir}",
        "+callbacks.step_timer._target_=recipelab.bench.StepTimer",
        f"+callbacks.step_timer.path={timer_file}",
        *overrides,
        *QUIET,
    ]
    launched = time.time()
    subprocess.run(args, check=True, capture_output=True, text=True)
    data = json.loads(timer_file.read_text())
    return {**data, "startup_s": data["times"][0] - launched}


def import_seconds() -> float:
    code = "import time; t = time.time(); import recipelab.train; print(time.time() - t)"
    return float(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    )


def time_to_accuracy(workdir: Path, target: float, overrides: list[str]) -> dict:
    from recipelab.wandb_file import read_run

    launched = time.time()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "recipelab.train",
            f"paths.log_dir={workdir}",
            "name=bench_full",
            *overrides,
            *QUIET,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    total = time.time() - launched
    (run_dir,) = [p.parent for p in workdir.rglob("metrics.json") if "bench_full" in str(p)]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = read_run(next(run_dir.glob("wandb/offline-run-*/run-*.wandb"))).history
    reached = [h["_runtime"] for h in history if h.get("val/acc", 0) >= target]
    return {
        "target_val_acc": target,
        "seconds_to_target": round(reached[0], 1) if reached else None,
        "test_acc": metrics["metrics"]["test/acc"],
        "train_time_s": metrics["train_time_s"],
        "command_wall_s": round(total, 1),
        "epochs": metrics["epochs"],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=120, help="training steps per contender and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--full", action="store_true", help="also time the default recipe to 0.92")
    parser.add_argument("--out", default="bench.json")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both contenders")
    args = parser.parse_args(argv)

    cfg = compose_cfg(args.overrides)
    batch = cfg.data.batch_size
    per_epoch = -(-(cfg.data.train_size or 60_000 - cfg.data.val_size) // batch)
    # the template's run: one epoch, or as many steps as asked
    epochs = max(1, -(-args.steps // per_epoch))
    overrides = [
        *args.overrides,
        f"trainer.max_epochs={epochs}",
        f"+trainer.limit_train_batches={min(args.steps, per_epoch)}",
        "+trainer.limit_val_batches=1",
    ]
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            times, pipeline = plain_loop(cfg, args.steps)
            plain = steady_rate(times, [0] * len(times), batch, args.warmup)
            tpl = template_run(overrides, Path(tmp))
            template = steady_rate(tpl["times"], tpl["epochs"], batch, args.warmup)
            rounds.append(
                {
                    "plain_img_s": plain,
                    "template_img_s": template,
                    "pipeline_img_s": pipeline,
                    "startup_s": tpl["startup_s"],
                }
            )
            print(
                f"round {r + 1}: plain {plain:.0f} img/s, template {template:.0f} img/s, "
                f"ratio {template / plain:.3f}, start-up {tpl['startup_s']:.1f} s",
                flush=True,
            )
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        imports = import_seconds()
        result = {
            "machine": {"cpus": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
            "recipe": args.overrides,
            "batch_size": batch,
            "steps_per_round": args.steps,
            "rounds": rounds,
            "overhead": {
                "plain_img_s": med["plain_img_s"],
                "template_img_s": med["template_img_s"],
                "ratio": med["template_img_s"] / med["plain_img_s"],
                "goal": 0.97,
            },
            "pipeline": {
                "pipeline_img_s": med["pipeline_img_s"],
                "train_img_s": med["plain_img_s"],
                "ratio": med["pipeline_img_s"] / med["plain_img_s"],
                "goal": 20,
            },
            "startup": {
                "to_first_step_s": med["startup_s"],
                "imports_s": imports,
                "beyond_imports_s": med["startup_s"] - imports,
                "goal_beyond_imports_s": 5,
            },
        }
        if args.full:
            result["time_to_accuracy"] = time_to_accuracy(Path(tmp), 0.92, args.overrides)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("rounds", "recipe")}, indent=2))
    return result


if __name__ == "__main__":
    main()
