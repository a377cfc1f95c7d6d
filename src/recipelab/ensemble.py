"""The ensemble entry: evaluate checkpoints alone and together on the test set.

    python -m recipelab.ensemble source=<run folder | sweep folder | glob | [ckpt,ckpt,...]>
                                 [combine=mean|vote|weights] [tta_flip=...] [log_wandb=false]

Every test batch goes through all members in one pass over the data. Writes ensemble.json, ensemble.md and
ensemble_curve.png into the source folder, and logs a W&B run (job_type=ensemble) in the source's group.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.optim.swa_utils import update_bn
from torchmetrics.functional.classification import multiclass_calibration_error

from recipelab import tracking
from recipelab.data import TensorBatchLoader, load_fashion_mnist, prepare_batch
from recipelab.errors import UserError
from recipelab.train import CONF_DIR, build_model
from recipelab.training import predict_proba


@dataclass
class Member:
    path: Path
    config: DictConfig
    model: torch.nn.Module


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, loaded without running any code it may carry."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0]
        raise UserError(f"checkpoint {path}: refused, loading it would run code ({reason})") from None
    except Exception as err:  # torch raises RuntimeError, EOFError, zip errors… for damaged files
        raise UserError(f"checkpoint {path}: corrupt or truncated ({type(err).__name__})") from None


def job_checkpoint(job: Path) -> Path:
    best = json.loads((job / "metrics.json").read_text()).get("best_checkpoint")
    return Path(best) if best else job / "checkpoints" / "last.ckpt"


def resolve_source(source) -> tuple[list[Path], Path]:
    """(member checkpoints, the folder results go to) for a run folder, sweep folder, list or glob."""
    parts = [str(p) for p in source] if isinstance(source, ListConfig | list) else [str(source)]
    if len(parts) == 1 and Path(parts[0]).is_dir():
        folder = Path(parts[0])
        if (folder / "checkpoints").is_dir():  # one run: its snapshot / time-point checkpoints
            members = sorted((folder / "checkpoints" / "members").glob("*.ckpt"))
            if not members:
                raise UserError(
                    f"source={folder}: no checkpoints/members/*.ckpt (train with "
                    "experiment=snapshot_ensemble or callbacks=time_points)"
                )
            return members, folder
        jobs = sorted((p.parent for p in folder.glob("*/metrics.json")), key=lambda p: p.name)
        done = [j for j in jobs if json.loads((j / "metrics.json").read_text())["status"] == "completed"]
        if not done:
            raise UserError(f"source={folder}: neither a run folder nor a sweep with completed jobs")
        return [job_checkpoint(j) for j in done], folder
    files = []
    for part in parts:
        matches = sorted(glob.glob(part)) if glob.has_magic(part) else [part]
        if not matches:
            raise UserError(f"source: {part!r} matches no checkpoint")
        files += [Path(m) for m in matches]
    return files, Path(os.path.commonpath([f.resolve().parent for f in files]))


def load_member(path: Path) -> Member:
    path = Path(path)
    ckpt = load_checkpoint(path)
    config = ckpt.get("hyper_parameters", {}).get("config")
    if not config:
        raise UserError(f"checkpoint {path}: holds no recipelab config to rebuild its model from")
    config = OmegaConf.create(config)
    model = build_model(config)
    prefix = "model."
    model.load_state_dict(
        {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    )
    return Member(path, config, model.eval())


def average_weights(members: list[Member], device) -> torch.nn.Module:
    """One model whose parameters are the mean of the members'; batch-norm statistics recomputed."""
    states = [m.model.state_dict() for m in members]
    shapes = {k: v.shape for k, v in states[0].items()}
    for m, s in zip(members[1:], states[1:], strict=True):
        if {k: v.shape for k, v in s.items()} != shapes:
            raise UserError(f"combine=weights: {m.path} has another architecture than {members[0].path}")
    averaged = build_model(members[0].config).to(device)
    mean = {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) for k, v in states[0].items()}
    averaged.load_state_dict(mean)
    # the mean of the members' running statistics does not describe the averaged weights' activations
    images, labels = train_images(members[0].config)
    loader = TensorBatchLoader(images.to(device), labels.to(device), 1000)
    update_bn(((prepare_batch(x),) for x, _ in loader), averaged)
    return averaged.eval()


def train_images(config: DictConfig):
    from hydra.utils import instantiate

    dm = instantiate(config.data, _partial_=True)()
    dm.setup()
    return dm.splits["train"]


def scores(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    return {
        "acc": (probs.argmax(-1) == labels).float().mean().item(),
        "nll": F.nll_loss(probs.clamp_min(1e-12).log(), labels).item(),
        "ece": multiclass_calibration_error(probs, labels, probs.shape[-1], n_bins=15).item(),
    }


def combine(probs: torch.Tensor, how: str) -> torch.Tensor:
    """probs [members, N, classes] → [N, classes]."""
    if how == "vote":  # vote shares as probabilities; ties go to the higher mean probability
        votes = F.one_hot(probs.argmax(-1), probs.shape[-1]).float().mean(0)
        return votes + 1e-6 * probs.mean(0)
    return probs.mean(0)


@torch.no_grad()
def evaluate(cfg: DictConfig) -> dict:
    if cfg.combine not in ("mean", "vote", "weights"):
        raise UserError(f"combine={cfg.combine!r}: choose mean, vote or weights")
    paths, out = resolve_source(cfg.source)
    members = [load_member(p) for p in paths]  # every file is checked before any evaluation
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if cfg.device == "auto"
        else cfg.device
    )
    for m in members:
        m.model.to(device)
    extra = [average_weights(members, device)] if cfg.combine == "weights" else []
    data = members[0].config.data
    images, labels = load_fashion_mnist(
        "test", root=data.root, download_dir=data.download_dir, download=data.download
    )
    flips = [m.config.get("tta_flip", False) if cfg.tta_flip is None else cfg.tta_flip for m in members]
    outputs = [[] for _ in range(len(members) + len(extra))]
    for xb, _ in TensorBatchLoader(images.to(device), labels.to(device), cfg.batch_size):
        x = prepare_batch(xb)
        for i, model in enumerate([m.model for m in members] + extra):
            outputs[i].append(predict_proba(model, x, flips[min(i, len(flips) - 1)]).cpu())
    probs = torch.stack([torch.cat(o) for o in outputs])
    member_probs = probs[: len(members)]
    ensemble_probs = probs[-1] if extra else combine(member_probs, cfg.combine)
    per_member = [
        {"checkpoint": str(m.path), **scores(p, labels)} for m, p in zip(members, member_probs, strict=True)
    ]
    ens = scores(ensemble_probs, labels)
    accs = [m["acc"] for m in per_member]
    preds = member_probs.argmax(-1)
    pairs = list(itertools.combinations(range(len(members)), 2))
    return {
        "source": OmegaConf.to_container(cfg.source) if isinstance(cfg.source, ListConfig) else cfg.source,
        "combine": cfg.combine,
        "n_members": len(members),
        "members": per_member,
        "ensemble": ens,
        "gain_over_best_member": ens["acc"] - max(accs),
        "gain_over_mean_member": ens["acc"] - sum(accs) / len(accs),
        "disagreement": sum((preds[i] != preds[j]).float().mean().item() for i, j in pairs)
        / max(len(pairs), 1),
        "acc_by_members": [
            scores(combine(member_probs[:k], "vote" if cfg.combine == "vote" else "mean"), labels)["acc"]
            for k in range(1, len(members) + 1)
        ],
        "group": source_group(members[0].path),
        "out_dir": str(out),
    }


def source_group(ckpt: Path) -> str:
    """The W&B group of the run a checkpoint came from (recorded in its metrics.json)."""
    for folder in (ckpt.parent.parent, ckpt.parent.parent.parent):
        if (folder / "metrics.json").is_file():
            return json.loads((folder / "metrics.json").read_text()).get("group", "ensemble")
    return "ensemble"


def member_name(checkpoint: str, out_dir: str) -> str:
    """A member's checkpoint relative to the results folder (job/checkpoints/... for a sweep's members)."""
    path, out = Path(checkpoint).resolve(), Path(out_dir).resolve()
    return str(path.relative_to(out)) if path.is_relative_to(out) else path.name


def markdown(result: dict) -> str:
    rows = [
        f"| {name} | {m['acc']:.4f} | {m['nll']:.4f} | {m['ece']:.4f} |"
        for m in result["members"]
        for name in [member_name(m["checkpoint"], result["out_dir"])]
    ]
    e = result["ensemble"]
    return "\n".join(
        [
            f"# Ensemble of {result['n_members']} members ({result['combine']})",
            "",
            "| member | test acc | NLL | ECE |",
            "| --- | --- | --- | --- |",
            *rows,
            f"| **ensemble** | **{e['acc']:.4f}** | **{e['nll']:.4f}** | **{e['ece']:.4f}** |",
            "",
            f"- gain over the best member: {result['gain_over_best_member']:+.4f}",
            f"- gain over the mean member: {result['gain_over_mean_member']:+.4f}",
            f"- mean pairwise disagreement: {result['disagreement']:.4f}",
            "- accuracy as members are added: " + ", ".join(f"{a:.4f}" for a in result["acc_by_members"]),
            "",
        ]
    )


def plot_curve(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = range(1, result["n_members"] + 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(k, result["acc_by_members"], marker="o", label="ensemble of the first k")
    ax.plot(k, [m["acc"] for m in result["members"]], marker="x", linestyle="none", label="member k alone")
    ax.set(xlabel="members", ylabel="test accuracy", title=f"{result['combine']} ensemble")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def log_wandb(result: dict, png: Path) -> None:
    import wandb

    run = wandb.init(
        project="recipelab",
        group=result["group"],
        job_type="ensemble",
        dir=result["out_dir"],
        config={"source": result["source"], "combine": result["combine"], "n_members": result["n_members"]},
    )
    table = wandb.Table(
        columns=["member", "acc", "nll", "ece"],
        data=[
            [member_name(m["checkpoint"], result["out_dir"]), m["acc"], m["nll"], m["ece"]]
            for m in result["members"]
        ]
        + [["ensemble", *result["ensemble"].values()]],
    )
    run.log({"members": table, "acc_by_members": wandb.Image(str(png))})
    run.summary.update(
        {f"ensemble/{k}": v for k, v in result["ensemble"].items()}
        | {k: result[k] for k in ("gain_over_best_member", "gain_over_mean_member", "disagreement")}
    )
    run.finish()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="ensemble")
def main(cfg: DictConfig) -> None:
    try:
        result = evaluate(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    out = Path(result["out_dir"])
    png = out / "ensemble_curve.png"
    plot_curve(result, png)
    tracking.write_json(out / "ensemble.json", result)
    (out / "ensemble.md").write_text(markdown(result))
    print(markdown(result))
    if cfg.log_wandb:
        log_wandb(result, png)


if __name__ == "__main__":
    main()
