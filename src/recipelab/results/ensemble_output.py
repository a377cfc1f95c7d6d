"""What an ensemble evaluation leaves: ensemble.json, ensemble.md, ensemble_curve.png, a W&B run."""

from __future__ import annotations

from pathlib import Path

from recipelab.records.tracking import write_json
from recipelab.results.wandb_run import log_result

SUMMARY = ("gain_over_best_member", "gain_over_mean_member", "disagreement")


def member_name(checkpoint: str, out_dir: str) -> str:
    """A member's checkpoint relative to the results folder (job/checkpoints/... for a sweep's members)."""
    path, out = Path(checkpoint).resolve(), Path(out_dir).resolve()
    return str(path.relative_to(out)) if path.is_relative_to(out) else path.name


def markdown(result: dict) -> str:
    rows = [
        f"| {name} | " + " | ".join(f"{v:.4f}" for v in metric_values(m)) + " |"
        for m in result["members"]
        for name in [member_name(m["checkpoint"], result["out_dir"])]
    ]
    e = result["ensemble"]
    return "\n".join(
        [
            f"# Ensemble of {result['n_members']} members ({result['combine']})",
            "",
            "| member | test acc | NLL | ECE | Brier |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "| **ensemble** | " + " | ".join(f"**{v:.4f}**" for v in metric_values(e)) + " |",
            *[f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + " |" for name, values in scaled(e)],
            "",
            *([f"- {result['temperature_note']}"] if result.get("temperature_note") else []),
            *mixed_recipes(result["recipes"]),
            f"- gain over the best member: {result['gain_over_best_member']:+.4f}",
            f"- gain over the mean member: {result['gain_over_mean_member']:+.4f}",
            f"- mean pairwise disagreement: {result['disagreement']:.4f}",
            "- accuracy as members are added: " + ", ".join(f"{a:.4f}" for a in result["acc_by_members"]),
            "",
        ]
    )


def mixed_recipes(recipes: list[dict]) -> list[str]:
    """A line that says so when the members come from more than one recipe (none when from one)."""
    if len(recipes) < 2:
        return []
    names = [
        "outside a run folder" if r["overrides"] is None else " ".join(r["overrides"]) or "no overrides"
        for r in recipes
    ]
    parts = [f"`{name}` ({r['members']})" for name, r in zip(names, recipes, strict=True)]
    return [f"- the members come from {len(recipes)} recipes (overrides, seed aside): " + ", ".join(parts)]


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


def write(result: dict, log_wandb: bool = True) -> str:
    """Write the result's files into its folder (and a W&B run); returns the markdown."""
    out = Path(result["out_dir"])
    png = out / "ensemble_curve.png"
    plot_curve(result, png)
    write_json(out / "ensemble.json", result)
    text = markdown(result)
    (out / "ensemble.md").write_text(text)
    if log_wandb:
        rows = [
            [member_name(m["checkpoint"], result["out_dir"]), *metric_values(m)] for m in result["members"]
        ]
        rows.append(["ensemble", *metric_values(result["ensemble"])])
        rows += [[name, *values] for name, values in scaled(result["ensemble"])]
        log_result(
            "ensemble",
            result["group"],
            out,
            {k: result[k] for k in ("source", "combine", "n_members")},
            {
                "members": lambda wandb: wandb.Table(columns=["member", *METRICS], data=rows),
                "acc_by_members": lambda wandb: wandb.Image(str(png)),
            },
            {f"ensemble/{k}": v for k, v in result["ensemble"].items()} | {k: result[k] for k in SUMMARY},
        )
    return text


METRICS = ("acc", "nll", "ece", "brier")


def metric_values(scores: dict, prefix: str = "") -> list[float]:
    return [scores[prefix + k] for k in METRICS]


def scaled(ensemble: dict) -> list[tuple[str, list[float]]]:
    """The temperature-scaled ensemble's row (name, values), if it was scaled."""
    if "temperature" not in ensemble:
        return []
    return [
        (f"ensemble, temperature-scaled (T={ensemble['temperature']:.3f})", metric_values(ensemble, "ts/"))
    ]
