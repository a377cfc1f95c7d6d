"""One checkpoint tested again, rebuilt from its own (checked) config: ``python -m recipelab.evaluate``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from recipelab.errors import UserError
from recipelab.records.folder import best_checkpoint, group_of, is_run_dir, run_dir_of
from recipelab.records.tracking import write_json
from recipelab.results import temperature
from recipelab.results.checkpoint import load_member, member_data
from recipelab.results.scores import device_of, scores, split_probs
from recipelab.results.wandb_run import log_result

SPLITS = ("test", "val", "train")  # train: its images without augmentation (the train-test gap)


def checkpoint_of(ckpt_path) -> Path:
    """A checkpoint file as given, or the checkpoint a run folder tested (its best, else last.ckpt)."""
    path = Path(str(ckpt_path))
    if path.is_dir():
        if not is_run_dir(path):
            raise UserError(f"ckpt_path={path}: a folder without checkpoints/ (give a run folder or a file)")
        return best_checkpoint(path)
    return path


def evaluate(cfg: DictConfig) -> dict:
    """Test accuracy, NLL, ECE and Brier score of one checkpoint, and (``temperature``) the same after
    temperature scaling fitted on the validation split; writes evaluate.json beside its run."""
    if cfg.split not in SPLITS:
        raise UserError(f"split={cfg.split!r}: choose {', '.join(SPLITS)}")
    scaling = temperature.enabled(cfg.get("temperature", False))
    path = checkpoint_of(cfg.ckpt_path)
    member = load_member(path)
    datamodule = member_data(member.config)
    view = member.tta(cfg.tta_flip, cfg.get("tta_shift"))
    device = device_of(cfg.device)
    model = member.model.to(device)
    probs, labels = split_probs([model], [view], datamodule, cfg.split, cfg.batch_size, device)
    metrics = scores(probs[0], labels)
    note = None
    if scaling:
        val_probs, val_labels = (
            (probs, labels)
            if cfg.split == "val"  # fitted and scored on the same images: the scores are optimistic
            else split_probs([model], [view], datamodule, "val", cfg.batch_size, device)
        )
        metrics |= temperature.calibrate(val_probs[0], val_labels, probs[0], labels)
        note = None if "temperature" in metrics else temperature.NO_VAL_SPLIT
    out = run_dir_of(path) or path.parent
    result = {
        "checkpoint": str(path),
        "split": cfg.split,
        "tta_flip": view[0],
        "tta_shift": view[1],
        "metrics": {k if k == "temperature" else f"{cfg.split}/{k}": v for k, v in metrics.items()},
        "temperature_note": note,
        "group": group_of(path, default="evaluate"),
        "out_dir": str(out),
    }
    write_json(out / "evaluate.json", result)
    if cfg.log_wandb:
        log_result(
            "evaluate",
            result["group"],
            out,
            {"checkpoint": str(path), "split": cfg.split, "temperature": scaling},
            {},
            result["metrics"],
        )
    return result
