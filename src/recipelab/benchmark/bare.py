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
from omegaconf import OmegaConf

from recipelab.benchmark.plain import InterleavedTimer, PlainLoop
from recipelab.benchmark.runs import compose_cfg
from recipelab.build import build_datamodule
from recipelab.data import TensorBatchLoader, prepare_batch


class BareModule(L.LightningModule):
    """One optimizer step a batch through ``self.optimizers()``, a closure and ``manual_backward``: the
    step the plain loop takes, with the plain loop's own parts (model, optimizer, schedule, augmentation,
    batches: ``PlainLoop``), under Lightning's loop and its optimizer wrapper. ``data``: the run's set-up
    DataModule, on the training device, read as the plain loop reads it, not given to Lightning (its
    transfer hooks are the template's)."""

    def __init__(self, cfg, data):
        super().__init__()
        # the timer builds its plain loop from the run's config, as in the template's run
        self.save_hyperparameters({"config": OmegaConf.to_container(cfg)})  # Hydra-free: unresolved
        self.automatic_optimization = False
        self.data = data
        self.plain = PlainLoop(cfg, *data.splits["train"], data.batch_size, data.stats)
        self.model = self.plain.model

    def train_dataloader(self) -> TensorBatchLoader:
        return self.plain.loader

    def training_step(self, batch, batch_idx):
        images, y = batch
        x = prepare_batch(images, *self.plain.stats, self.plain.aug).contiguous(
            memory_format=self.plain.format
        )
        optimizer = self.optimizers()

        def closure() -> torch.Tensor:
            loss = F.cross_entropy(self.model(x), y, label_smoothing=self.plain.smoothing)
            optimizer.zero_grad()
            self.manual_backward(loss)
            return loss

        optimizer.step(closure=closure)
        self.lr_schedulers().step()

    def configure_optimizers(self):
        return [self.plain.opt], [self.plain.sched]


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
    datamodule.to(trainer.strategy.root_device)  # resident on the device, as the template's data
    trainer.fit(BareModule(cfg, datamodule))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
