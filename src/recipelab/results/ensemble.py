"""Checkpoint ensembles: members evaluated alone and together on the test set, in one pass over it."""

from __future__ import annotations

import glob
import itertools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.optim.swa_utils import update_bn

from recipelab.build import build_model
from recipelab.errors import UserError
from recipelab.records.folder import (
    best_checkpoint,
    group_of,
    is_run_dir,
    job_dirs,
    read_overrides,
    read_record,
    run_dir_of,
)
from recipelab.results import temperature
from recipelab.results.checkpoint import Member, load_member, member_data
from recipelab.results.scores import device_of, scores, split_probs

COMBINE = ("mean", "vote", "weights")
# overrides that tell members of one recipe apart (their initialization, their fold of the data)
MEMBER_KEYS = ("seed", "data.fold")


def resolve_source(source) -> tuple[list[Path], Path]:
    """(member checkpoints, the folder results go to) for a run folder, sweep folder, list or glob."""
    parts = [str(p) for p in source] if isinstance(source, ListConfig | list) else [str(source)]
    if len(parts) == 1 and Path(parts[0]).is_dir():
        folder = Path(parts[0])
        if is_run_dir(folder):  # one run: its snapshot / time-point checkpoints
            members = sorted((folder / "checkpoints" / "members").glob("*.ckpt"))
            if not members:
                raise UserError(
                    f"source={folder}: no checkpoints/members/*.ckpt (train with "
                    "experiment=snapshot_ensemble or callbacks=time_points)"
                )
            return members, folder
        done = [j for j in job_dirs(folder) if (read_record(j) or {}).get("status") == "completed"]
        if not done:
            raise UserError(f"source={folder}: neither a run folder nor a sweep with completed jobs")
        return [best_checkpoint(j) for j in done], folder
    files = []
    for part in parts:
        matches = sorted(glob.glob(part)) if glob.has_magic(part) else [part]
        if not matches:
            raise UserError(f"source: {part!r} matches no checkpoint")
        files += [Path(m) for m in matches]
    return files, Path(os.path.commonpath([f.resolve().parent for f in files]))


def member_recipes(paths: list[Path]) -> list[dict]:
    """The recipes the members were trained by: each distinct set of their runs' overrides (seed and fold
    aside), in the members' order, with how many members it gave; None for a checkpoint outside a run
    folder. An ensemble over a sweep of several arms mixes them: legitimate, so said, not refused."""
    counts: dict[tuple | None, int] = {}
    for path in paths:
        folder = run_dir_of(path)
        key = None
        if folder is not None and (folder / ".hydra" / "overrides.yaml").is_file():
            overrides = read_overrides(folder).items()
            key = tuple(f"{k}={v}" for k, v in overrides if k.lstrip("+~") not in MEMBER_KEYS)
        counts[key] = counts.get(key, 0) + 1
    return [{"overrides": None if k is None else list(k), "members": n} for k, n in counts.items()]


def average_weights(members: list[Member], device, datamodule=None) -> torch.nn.Module:
    """One model whose parameters are the mean of the members'; batch-norm statistics recomputed on the
    training images of the first member's data."""
    states = [m.model.state_dict() for m in members]
    shapes = {k: v.shape for k, v in states[0].items()}
    for m, s in zip(members[1:], states[1:], strict=True):
        if {k: v.shape for k, v in s.items()} != shapes:
            raise UserError(f"combine=weights: {m.path} has another architecture than {members[0].path}")
    averaged = build_model(members[0].config).to(device)
    mean = {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) for k, v in states[0].items()}
    averaged.load_state_dict(mean)
    # the mean of the members' running statistics does not describe the averaged weights' activations
    datamodule = (datamodule or member_data(members[0].config)).to(device)
    images = datamodule.splits["train"][0]
    update_bn((datamodule.prepare(images[i : i + 1000]) for i in range(0, len(images), 1000)), averaged)
    return averaged.eval()


def combine(probs: torch.Tensor, how: str) -> torch.Tensor:
    """probs [members, N, classes] → [N, classes]."""
    if how == "vote":  # vote shares as probabilities; ties go to the higher mean probability
        votes = F.one_hot(probs.argmax(-1), probs.shape[-1]).float().mean(0)
        return votes + 1e-6 * probs.mean(0)
    return probs.mean(0)


def evaluate(cfg: DictConfig) -> dict:
    if cfg.combine not in COMBINE:
        raise UserError(f"combine={cfg.combine!r}: choose {', '.join(COMBINE)}")
    scaling = temperature.enabled(cfg.get("temperature", False))
    paths, out = resolve_source(cfg.source)
    members = [load_member(p) for p in paths]  # every file is checked before any evaluation
    device = device_of(cfg.device)
    for m in members:
        m.model.to(device)
    datamodule = member_data(members[0].config)
    extra = [average_weights(members, device, datamodule)] if cfg.combine == "weights" else []
    views = [m.tta(cfg.tta_flip, cfg.get("tta_shift")) for m in members]
    models = [m.model for m in members] + extra
    views += views[-1:] * len(extra)
    probs, labels = split_probs(models, views, datamodule, "test", cfg.batch_size, device)
    member_probs = probs[: len(members)]
    ensemble_probs = probs[-1] if extra else combine(member_probs, cfg.combine)
    per_member = [
        {"checkpoint": str(m.path), **scores(p, labels)} for m, p in zip(members, member_probs, strict=True)
    ]
    ens = scores(ensemble_probs, labels)
    if scaling:  # the ensemble's own prediction, scaled: log of its (mean) probabilities / T
        val, val_labels = split_probs(models, views, datamodule, "val", cfg.batch_size, device)
        val_ensemble = val[-1] if extra else combine(val[: len(members)], cfg.combine)
        ens |= temperature.calibrate(val_ensemble, val_labels, ensemble_probs, labels)
    accs = [m["acc"] for m in per_member]
    preds = member_probs.argmax(-1)
    pairs = list(itertools.combinations(range(len(members)), 2))
    return {
        "source": OmegaConf.to_container(cfg.source) if isinstance(cfg.source, ListConfig) else cfg.source,
        "combine": cfg.combine,
        "n_members": len(members),
        "recipes": member_recipes(paths),
        "members": per_member,
        "ensemble": ens,
        "temperature_note": temperature.NO_VAL_SPLIT if scaling and "temperature" not in ens else None,
        "gain_over_best_member": ens["acc"] - max(accs),
        "gain_over_mean_member": ens["acc"] - sum(accs) / len(accs),
        "disagreement": sum((preds[i] != preds[j]).float().mean().item() for i, j in pairs)
        / max(len(pairs), 1),
        "acc_by_members": [
            scores(combine(member_probs[:k], "vote" if cfg.combine == "vote" else "mean"), labels)["acc"]
            for k in range(1, len(members) + 1)
        ],
        "group": group_of(members[0].path),
        "out_dir": str(out),
    }
