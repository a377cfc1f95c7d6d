"""The simplest correct training loop with a run's recipe, timed step by step against the template's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recipelab.build import build_model, build_param_groups
from recipelab.data import TensorBatchLoader, build_augmentation, prepare_batch


def sync_time(device: torch.device) -> float:
    """Wall-clock time once the device has finished its queued work (GPU steps run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class PlainLoop:
    """The simplest correct training loop with the recipe of ``cfg``, one step per ``step()`` call."""

    def __init__(self, cfg, images: torch.Tensor, labels: torch.Tensor, batch_size: int, stats):
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
        self.stats = stats  # the dataset's per-channel mean and std, shaped [1, C, 1, 1]
        self.bf16 = str(cfg.trainer.precision).startswith("bf16")
        self.smoothing = cfg.regularization.label_smoothing
        self.batches = self._batches()

    def _batches(self):
        while True:
            yield from self.loader
            self.loader.sampler.set_epoch(self.loader.sampler.epoch + 1)

    def step(self) -> None:
        xb, yb = next(self.batches)
        x = prepare_batch(xb, *self.stats, self.aug).contiguous(memory_format=self.format)
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
            prepare_batch(xb, *self.stats, self.aug)
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
            dm = trainer.datamodule or pl_module.data  # the bare loop's module keeps its data itself
            images, labels = dm.splits["train"]
            cfg = OmegaConf.create(pl_module.hparams["config"])
            self.plain = PlainLoop(cfg, images, labels, dm.batch_size, dm.stats)
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
