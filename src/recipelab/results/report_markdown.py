"""report.md from report.json's content: the rules the verdicts follow (quoted from report.json's
``statistics``, which the statistics modules write), the claim's words, the variants with their verdict,
the paired comparisons, the seed plan, and the jobs."""

from __future__ import annotations

import math
from pathlib import Path

from recipelab.results.report_compare import comparison_of, fmt, fmt_p


def _pm(s: dict) -> str:
    if s["n"] == 0:
        return "—"
    return f"{s['mean']:.4f} ± {s['std']:.4f}" if math.isfinite(s["std"]) else f"{s['mean']:.4f}"


def _interval(c: dict) -> str:
    if c["n"] == 0:
        return "—"
    return f"{c['mean_diff']:+.4f} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"


def _improved(c: dict) -> str:
    """``k/n (share [low, high])``: the paired seeds that improved, with the exact interval."""
    imp = c["paired_improvement"]
    if imp["n"] == 0:
        return "—"
    return f"{imp['improved']}/{imp['n']} ({imp['share']:.2f} [{imp['ci_low']:.2f}, {imp['ci_high']:.2f}])"


def _reach(cost: dict) -> str:
    """Epochs to the baseline's final mean val/acc, with the training seconds by then where known."""
    epochs, seconds = cost["epochs_to_baseline_val_acc"], fmt(cost["seconds_to_baseline_val_acc"], 1)
    return fmt(epochs) + (f" ({seconds} s)" if epochs is not None and seconds != "—" else "")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _rules(doc: dict) -> list[str]:
    stat = doc["statistics"]
    lines = [
        "- per variant: mean ± sample std (n − 1) over its completed jobs; IQM from 4 seeds; beside them "
        f"P(> baseline), {stat['unpaired_improvement']}",
        "- each variant − the baseline over the seeds both completed: the mean paired difference and its "
        f"{stat['level']:.0%} interval: {stat['interval']}",
        f"- the deciding test: {stat['decides']}; permutation: {stat['permutation']}",
        f"- {stat['multiple_comparisons']}; α = {stat['alpha']}",
        f"- verdict: {stat['verdict']}; {stat['power']}",
        f"- {stat['paired_improvement']}",
    ]
    claim = doc["claim"]
    if claim is not None:
        lines += ["", f"**Claim: {claim['words']}.** Rule: {claim['rule']}."]
        for key in ("as_predicted", "against", "undecided"):
            if claim[key]:
                lines.append(f"- {key.replace('_', ' ')}: {'; '.join(claim[key])}")
    return lines


def _variants(doc: dict) -> list[str]:
    header = ["variant", "n", "test/acc", "IQM", "min – max", "P(> baseline), unpaired", "test/loss"]
    header += ["Δ test/acc [95% CI]", "verdict", "train time (s)", "epochs (s) to baseline val/acc"]
    header += ["images/s", "best epoch", "failed", "diverged"]
    rows = []
    for v in doc["variants"]:
        acc, c = v["metrics"]["test/acc"], comparison_of(doc, v["variant"], "test/acc")
        cost = v["cost"]
        rows.append(
            [
                v["variant"],
                v["n"],
                _pm(acc),
                fmt(acc["iqm"]),
                f"{fmt(acc['min'])} – {fmt(acc['max'])}" if acc["n"] else "—",
                "baseline" if v["baseline"] else fmt(c["prob_improvement_unpaired"], 2),
                _pm(v["metrics"]["test/loss"]),
                "baseline" if v["baseline"] else _interval(c),
                "baseline" if v["baseline"] else c["verdict"]["words"],
                fmt(cost["train_time_s"], 1),
                _reach(cost) if v["n"] else "—",
                fmt(cost["images_per_s"], 0),
                fmt(v["best_epoch"]),
                v["failed"],
                v["diverged"],
            ]
        )
    return ["", "## Variants", "", *_table(header, rows)]


def _paired(doc: dict) -> list[str]:
    base = doc["baseline"]["variant"]
    header = ["variant", "metric", "paired seeds", "Δ mean [95% CI]", "interval", "permutation p"]
    header += ["t-test p", "improved seeds [95% CI]", "Holm p (test, m)", "verdict", "min detectable Δ"]
    rows = []
    for c in doc["comparisons"]:
        ver = c["verdict"]
        rows.append(
            [
                c["variant"],
                c["metric"] + ("" if c["higher_is_better"] else " (lower is better)"),
                c["n"],
                _interval(c),
                c["ci_method"] or "—",
                fmt_p(c["p_perm"]) + ("" if c["p_perm_exact"] else " (sampled)"),
                fmt_p(c["t_test"]["p"]),
                _improved(c),
                f"{fmt_p(ver['adjusted_p'])} ({ver['test_used']}, {ver['family']})",
                ver["words"],
                fmt(ver["min_detectable_diff"]) if math.isfinite(ver["min_detectable_diff"]) else "undefined",
            ]
        )
    lines = ["", f"## Paired comparisons with the baseline (`{base}`)", "", *_table(header, rows)]
    compared = [m for m, info in doc["metrics"].items() if info["compared"]]
    for c in doc["comparisons"]:
        if c["unpaired_jobs"] and c["metric"] == compared[0]:
            jobs = ", ".join(f"{u['side']} job {u['job']} ({u['status']})" for u in c["unpaired_jobs"])
            seeds = ", ".join(str(s) for s in c["unpaired_seeds"])
            lines.append(f"\nUnpaired in `{c['variant']}`: seed {seeds}, left out of its comparison: {jobs}.")
    return lines


def _plan(plan: dict) -> list[str]:
    header = ["variant", "metric", "pilot paired seeds", "sd of the differences", "level (α/m)", "seeds"]
    rows = [
        [r["variant"], r["metric"], r["pilot_paired_seeds"], fmt(r["sd_diff"]), f"{r['level']:.3g}"]
        + [r["seeds"] if r["seeds"] is not None else _no_plan(r, plan)]
        for r in plan["rows"]
    ]
    title = (
        f"## Seed plan: paired seeds to detect a difference of {plan['effect']:g} with power {plan['power']}"
    )
    return ["", title, "", *_table(header, rows)]


def _no_plan(row: dict, plan: dict) -> str:
    if row["pilot_paired_seeds"] < 2 or not row["sd_diff"] > 0:
        return "undefined (the pilot has fewer than 2 paired seeds, or no spread)"
    return f"more than {plan['max_seeds']}"


def _jobs(doc: dict) -> list[str]:
    lines = ["", "## Jobs", "", "| job | options | status | test/acc |", "| --- | --- | --- | --- |"]
    shown = [*doc["swept_keys"], *doc["seed_keys"]]
    for j in doc["jobs"]:
        status = j["status"] if j["status"] == "completed" else f"**{j['status'].upper()}**"
        acc = j["metrics"].get("test/acc") if j["status"] == "completed" else None
        options = " ".join(f"{k}={j['overrides'][k]}" for k in shown if k in j["overrides"])
        lines.append(f"| {j['job']} | `{options}` | {status} | {fmt(acc)} |")
    return lines


def markdown(doc: dict) -> str:
    base, keys = doc["baseline"]["variant"], ", ".join(doc["swept_keys"]) or "—"
    lines = [
        f"# Ablation report: {Path(doc['sweep_dir']).name}",
        "",
        f"{len(doc['jobs'])} jobs, {len(doc['variants'])} variants (swept: {keys}); "
        f"baseline `{base}` (chosen by {doc['baseline']['chosen_by']}).",
        "",
        *_rules(doc),
    ]
    prov = doc["provenance"]
    if prov["mixed_pairs"]:
        lines += ["", f"**Mixed code** (report.allow_mixed_code): {'; '.join(prov['mixed_pairs'])}."]
    lines += _variants(doc)
    if doc["comparisons"]:
        lines += _paired(doc)
    if doc["plan"] is not None:
        lines += _plan(doc["plan"])
    lines += _jobs(doc)
    lines += ["", "![test accuracy per variant](accuracy.png)", "", "![validation curves](val_curves.png)"]
    lines += ["", "![paired differences with the baseline](paired_diff.png)", ""]
    return "\n".join(lines)
