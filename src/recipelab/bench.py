"""`make bench`: the template against the simplest correct training loop, on this machine.

    python -m recipelab.bench [--steps N] [--rounds R] [--full] [--out bench.json] [overrides ...]

1. overhead: steady-state images/s of `python -m recipelab.train` (full path: config, DataModule,
   augmentation, LightningModule, logging, checkpointing, W&B offline) against a plain PyTorch loop with
   the same model, data tensors, augmentation, optimizer, schedule, precision and seed. The two alternate
   step by step inside the template's process (a callback runs one plain step at the start of every
   template step and takes its time out of the template's), so that the machine's noise, which on a
   shared 2-core VM moves whole runs by ±25%, hits both alike. Each round is a fresh process.
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
from omegaconf import OmegaConf

from recipelab.data import build_augmentation, prepare_batch
from recipelab.data.fashion_mnist import TensorBatchLoader
from recipelab.train import CONF_DIR, build_model, build_param_groups


def sync_time(device: torch.device) -> float:
    """Wall-clock time once the device has finished its queued work (GPU steps run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


class PlainLoop:
    """The simplest correct training loop with the recipe of ``cfg``, one step per ``step()`` call."""

    def __init__(self, cfg, images: torch.Tensor, labels: torch.Tensor, batch_size: int):
        self.device = images.device
        self.format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        with torch.random.fork_rng(devices=[]):  # seeded like a run, without reseeding the template's run
            torch.manual_seed(cfg.seed)
            self.model = build_model(cfg).to(self.device, memory_format=self.format).train()
        if cfg.compile:
            self.model.compile()
        self.opt = instantiate(cfg.optimizer)(build_param_groups(cfg, batch_size)(self.model))
        per_epoch = -(-len(labels) // batch_size)
        self.sched = instantiate(cfg.scheduler.build)(
            self.opt, total_steps=per_epoch * cfg.trainer.max_epochs, steps_per_epoch=per_epoch
        )
        self.aug = build_augmentation(cfg.augmentation.ops, seed=cfg.seed)
        self.loader = TensorBatchLoader(images, labels, batch_size, shuffle=True, seed=cfg.seed)
        self.bf16 = str(cfg.trainer.precision).startswith("bf16")
        self.smoothing = cfg.regularization.label_smoothing
        self.batches = self._batches()

    def _batches(self):
        while True:
            yield from self.loader
            self.loader.sampler.set_epoch(self.loader.sampler.epoch + 1)

    def step(self) -> None:
        xb, yb = next(self.batches)
        x = prepare_batch(xb, self.aug).contiguous(memory_format=self.format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = F.cross_entropy(self.model(x), yb, label_smoothing=self.smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()

    def pipeline_rate(self) -> float:
        """images/s of batching + uint8→float + augmentation alone, over a full pass."""
        start, n = sync_time(self.device), 0
        for xb, _ in self.loader:
            prepare_batch(xb, self.aug)
            n += len(xb)
        return n / (sync_time(self.device) - start)


class InterleavedTimer(L.Callback):
    """Alternates the template and a plain loop step by step, and writes both step times on train end.

    At the start of every training batch the template's previous step has ended: its time is the gap
    since this hook last returned. The hook then runs and times one plain step. The plain loop is built
    from the run's own config and training tensors at the first batch, after the start-up time is taken.
    """

    def __init__(self, path: str):
        self.path = path
        self.plain: PlainLoop | None = None
        self.first_step = self.returned = 0.0
        self.template, self.plain_times, self.crosses_epoch = [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = sync_time(pl_module.device)
        if self.plain is None:
            self.first_step = time.time()
            images, labels = trainer.datamodule.splits["train"]
            cfg = OmegaConf.create(pl_module.hparams["config"])
            self.plain = PlainLoop(cfg, images, labels, trainer.datamodule.batch_size)
        else:
            self.template.append(now - self.returned)
            self.crosses_epoch.append(batch_idx == 0)
        start = sync_time(pl_module.device)
        self.plain.step()
        self.returned = sync_time(pl_module.device)
        self.plain_times.append(self.returned - start)

    def on_train_end(self, trainer, pl_module):
        record = {
            "template_s": self.template,
            "plain_s": self.plain_times[: len(self.template)],  # each paired with the template step after it
            "crosses_epoch": self.crosses_epoch,
            "first_step": self.first_step,
            "pipeline_img_s": self.plain.pipeline_rate(),
        }
        Path(self.path).write_text(json.dumps(record))


def steady_rates(record: dict, batch_size: int, warmup: int) -> tuple[float, float]:
    """Plain and template images/s over the step pairs after ``warmup``.

    A template step that crosses an epoch boundary (validation, checkpoints) is left out with its pair.
    """
    pairs = [
        (p, t)
        for p, t, crosses in zip(
            record["plain_s"], record["template_s"], record["crosses_epoch"], strict=True
        )
        if not crosses
    ][warmup:]
    return tuple(batch_size * len(pairs) / sum(times) for times in zip(*pairs, strict=True))


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=overrides)


def template_run(overrides: list[str], workdir: Path) -> dict:
    """`python -m recipelab.train` in a subprocess with an InterleavedTimer; its step times and start-up."""
    timer_file = workdir / f"steps-{time.time_ns()}.json"
    args = [
        sys.executable,
        "-m",
        "recipelab.train",
        f"paths.log_dir={workdir}",
        "+callbacks.step_timer._target_=recipelab.bench.InterleavedTimer",
        f"+callbacks.step_timer.path={timer_file}",
        *overrides,
        *QUIET,
    ]
    launched = time.time()
    subprocess.run(args, check=True, capture_output=True, text=True)
    record = json.loads(timer_file.read_text())
    return {**record, "startup_s": record["first_step"] - launched}


def import_seconds() -> float:
    code = "import time; t = time.time(); import recipelab.train; print(time.time() - t)"
    return float(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    )


def time_to_accuracy(workdir: Path, target: float, overrides: list[str]) -> dict:
    from recipelab.wandb_file import read_run, run_files

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
    history = read_run(run_files(run_dir)[0]).history
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
    parser.add_argument("--steps", type=int, default=120, help="training steps per round (each contender)")
    parser.add_argument("--rounds", type=int, default=5)
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
            record = template_run(overrides, Path(tmp))
            plain, template = steady_rates(record, batch, args.warmup)
            rounds.append(
                {
                    "plain_img_s": plain,
                    "template_img_s": template,
                    "ratio": template / plain,
                    "pipeline_img_s": record["pipeline_img_s"],
                    "startup_s": record["startup_s"],
                }
            )
            print(
                f"round {r + 1}: plain {plain:.0f} img/s, template {template:.0f} img/s, "
                f"ratio {template / plain:.3f}, start-up {record['startup_s']:.1f} s",
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
                "ratio": med["ratio"],  # the median of the rounds' ratios
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
