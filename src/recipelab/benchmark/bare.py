"""The overhead floor's reference: Lightning's own loop, with nothing of the template's around it.

    python -m recipelab.benchmark.bare <timer.json> [overrides ...]

trains the plain loop's step (the same model, optimizer, schedule, data tensors, batches, augmentation,
precision and seed, built from the run's config) as Lightning's documented manual-optimization idiom,
with no DataModule, logger, checkpoint, metric or callback but the bench's ``InterleavedTimer``. Its
extra milliseconds a step over the plain loop are what Lightning's loop itself costs on this machine:
the part of the template's floor it cannot remove while it trains inside Lightning. Run by
``make bench`` (``overhead_floor_ms.lightning``), one process a round.
"""

from __future__ import annotations

import sys

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recipelab.benchmark.plain import InterleavedTimer
from recipelab.benchmark.runs import compose_cfg
from recipelab.build import build_datamodule, build_model, build_param_groups
from recipelab.data import TensorBatchLoader, build_augmentation, prepare_batch


class BareModule(L.LightningModule):
    """One optimizer step a batch through ``self.optimizers()``, a closure and ``manual_backward``: the
    step the plain loop takes, under Lightning's loop and its optimizer wrapper. ``data``: the run's set-up
    DataModule, read as the plain loop reads it (its training tensors and statistics), not given to
    Lightning (its transfer hooks are the template's)."""

    def __init__(self, cfg, data):
        super().__init__()
        self.cfg, self.data, self.batch_size = cfg, data, data.batch_size
        self.steps_per_epoch = -(-data.num_train // data.batch_size)
        self.augmentation = build_augmentation(cfg.augmentation.ops, seed=cfg.seed)
        # the timer builds its plain loop from the run's config, as in the template's run
        self.save_hyperparameters({"config": OmegaConf.to_container(cfg)})  # Hydra-free: unresolved
        self.automatic_optimization = False
        self.format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        with torch.random.fork_rng(devices=[]):  # the plain loop's initial weights
            torch.manual_seed(cfg.seed)
            self.model = build_model(cfg).to(memory_format=self.format)

    def setup(self, stage: str) -> None:
        self.data.to(self.trainer.strategy.root_device)  # resident on the device, as the template's data

    def train_dataloader(self) -> TensorBatchLoader:
        images, labels = self.data.splits["train"]
        return TensorBatchLoader(images, labels, self.batch_size, shuffle=True, seed=self.cfg.seed)

    def training_step(self, batch, batch_idx):
        images, y = batch
        x = prepare_batch(images, *self.data.stats, self.augmentation)
        optimizer = self.optimizers()

        def closure() -> torch.Tensor:
            out = self.model(x.contiguous(memory_format=self.format))
            loss = F.cross_entropy(out, y, label_smoothing=self.cfg.regularization.label_smoothing)
            optimizer.zero_grad()
            self.manual_backward(loss)
            return loss

        optimizer.step(closure=closure)
        self.lr_schedulers().step()

    def configure_optimizers(self):
        optimizer = instantiate(self.cfg.optimizer)(build_param_groups(self.cfg, self.batch_size)(self.model))
        total = self.steps_per_epoch * self.cfg.trainer.max_epochs  # the plain loop's schedule length
        schedule = instantiate(self.cfg.scheduler.build)(
            optimizer, total_steps=total, steps_per_epoch=self.steps_per_epoch
        )
        return [optimizer], [schedule]


def bare_trainer(**settings) -> L.Trainer:
    """A Trainer with nothing of its own around the loop: one device, no validation, logger, checkpoint,
    progress bar or model summary."""
    nothing = {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    return L.Trainer(devices=1, limit_val_batches=0, logger=False, **nothing, **settings)


def main(timer_path: str, overrides: list[str]) -> None:
    cfg = compose_cfg(overrides)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    trainer = bare_trainer(
        accelerator=cfg.trainer.accelerator,
        precision=cfg.trainer.precision,
        max_epochs=cfg.trainer.max_epochs,
        limit_train_batches=cfg.trainer.limit_train_batches,
        callbacks=[InterleavedTimer(timer_path)],
    )
    trainer.fit(BareModule(cfg, datamodule))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
