"""Which variant an option string names, and what an experiment declares for its report (its ``report:``
section, as each job stored it in ``.hydra/config.yaml``): the baseline, and the claim the sweep tests.

A claim is declared as::

    report:
      baseline: optimizer=sgd
      claim:                         # the arms it names, under the direction it predicts for them
        better: [optimizer=momentum, optimizer=nesterov]
        worse: []
        metrics: [test/acc]          # what it is judged on (default: test/acc)

``better``/``worse`` read in each metric's own direction (a lower loss is better). Its words come from
``verdict.claim_verdict``; an arm the sweep did not run (or chosen as the baseline by ``report.baseline=``),
or a metric no job recorded, is not compared and leaves the claim undecided.
"""

from __future__ import annotations

import re

from recipelab.errors import UserError
from recipelab.results.report_jobs import Job
from recipelab.results.verdict import BETTER, CLAIM_RULE, WORSE, claim_verdict

DEFAULT_CLAIM_METRICS = ("test/acc",)


def _pairs(key: str, spec) -> list[tuple[str, str]]:
    """``optimizer=sgd optimizer.lr=0.1`` (spaces or commas between) or a mapping → (key, value) pairs."""
    if isinstance(spec, dict):
        return [(str(k), str(v)) for k, v in spec.items()]
    tokens = re.split(r"[\s,]+(?=[+~]?[\w.\-/@]+=)", str(spec).strip())
    if not all("=" in t for t in tokens):
        raise UserError(f"{key}={spec}: give the variant's options as key=value")
    return [tuple(t.split("=", 1)) for t in tokens]


def _same(a: str | None, b: str) -> bool:
    if a == b:
        return True
    try:
        return a is not None and float(a) == float(b)
    except ValueError:
        return False


def matching(groups: dict[str, list[Job]], key: str, spec) -> list[str]:
    """The variants whose options include every key=value of ``spec`` (``key`` names it in errors)."""
    wanted = [(k.lstrip("+~"), v) for k, v in _pairs(key, spec)]
    found = []
    for name, jobs in groups.items():
        options = {k.lstrip("+~"): v for k, v in jobs[0].overrides.items()}
        if all(_same(options.get(k), v) for k, v in wanted):
            found.append(name)
    return found


def _one(groups: dict[str, list[Job]], key: str, spec) -> str:
    found = matching(groups, key, spec)
    if len(found) != 1:
        which = "; ".join(found if found else groups)
        how = "matches no variant" if not found else f"matches {len(found)} variants"
        raise UserError(f"{key}={spec}: {how} ({which})")
    return found[0]


def declared(groups: dict[str, list[Job]], key: str):
    """The experiment's ``report.<key>``, from the first job that stored one; None if none did."""
    for job in (j for js in groups.values() for j in js):
        value = (job.config.get("report") or {}).get(key)
        if value:
            return value
    return None


def choose_baseline(groups: dict[str, list[Job]], option: str | None) -> tuple[str, str]:
    """(baseline variant, what chose it): the option, else the experiment's ``report.baseline``."""
    if option:
        return _one(groups, "report.baseline", option), "report.baseline option"
    spec = declared(groups, "baseline")
    if spec:
        return _one(groups, "report.baseline", spec), "experiment config report.baseline"
    return next(iter(groups)), "first variant"


def claim_spec(groups: dict[str, list[Job]]) -> tuple[list[str], dict[str, str]] | None:
    """The declared claim as (metrics, {arm: better/worse}), arms named by their variant where the sweep
    ran them (an arm it did not run keeps its spelling); None without a claim. A malformed claim, or an
    arm that names several variants, is a UserError."""
    raw = declared(groups, "claim")
    if raw is None:
        return None
    claim = raw if isinstance(raw, dict) else {}
    better, worse = claim.get(BETTER, []), claim.get(WORSE, [])
    metrics = claim.get("metrics", list(DEFAULT_CLAIM_METRICS))
    well_formed = (
        not set(claim) - {BETTER, WORSE, "metrics"}
        and all(isinstance(x, list) for x in (better, worse, metrics))
        and (better or worse)
        and metrics
    )
    if not well_formed:
        raise UserError(
            f"report.claim: give `{BETTER}` and/or `{WORSE}` (lists of the arms' option strings) and "
            f"optionally `metrics` (a list); got {raw}"
        )
    named = {}
    for predicted, specs in ((BETTER, better), (WORSE, worse)):
        for spec in specs:
            found = matching(groups, f"report.claim.{predicted}", spec)
            if len(found) > 1:
                raise UserError(
                    f"report.claim.{predicted}: {spec} matches {len(found)} variants ({'; '.join(found)})"
                )
            named[found[0] if found else str(spec)] = predicted
    return [str(m) for m in metrics], named


def judge_claim(spec: tuple[list[str], dict[str, str]] | None, comparisons: list[dict]) -> dict | None:
    """report.json's ``claim``: the predictions and their words (``verdict.claim_verdict``)."""
    if spec is None:
        return None
    metrics, arms = spec
    predictions = [(arm, metric, predicted) for metric in metrics for arm, predicted in arms.items()]
    labels = {(c["variant"], c["metric"]): c["verdict"]["verdict"] for c in comparisons}
    return {
        "predictions": [{"arm": a, "metric": m, "predicted": p} for a, m, p in predictions],
        **claim_verdict(predictions, labels),
        "rule": CLAIM_RULE,
    }
