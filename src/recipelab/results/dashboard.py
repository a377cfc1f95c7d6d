"""A sweep's W&B dashboard as code: a saved workspace view built with W&B's own ``wandb-workspaces``:
the runs of one sweep (its W&B group) grouped by the swept options, so that every panel aggregates a
variant's seeds. Without a W&B login (or with ``WANDB_MODE=offline``) the spec is written as JSON."""

from __future__ import annotations

import os
from pathlib import Path

import wandb
import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
from wandb_workspaces.workspaces import internal

from recipelab.records import tracking  # noqa: F401  (W&B offline unless WANDB_MODE says otherwise)
from recipelab.records.folder import CONF_DIR

REPORT_TABLE = "report"  # the wandb.Table that results/report.py logs to the sweep's group
OFFLINE_MODES = {"offline", "dryrun", "disabled"}
MAX_RUNS = 200  # the workspace shows this many runs (W&B's default of 10 would hide most of a sweep)


def config_key(key: str, groups=None) -> str:
    """The W&B config path of a swept key. A Hydra config group (a folder of conf/, e.g. ``optimizer``) is
    swept by option name, which each run records under ``choices.<group>`` (its own config entry is a
    dict); any other key (``optimizer.lr``) is its own nested config path."""
    if groups is None:
        groups = {p.name for p in Path(CONF_DIR).iterdir() if p.is_dir()}
    return f"choices.{key}" if key in groups else key


def dashboard_spec(
    project: str,
    group: str,
    swept_keys: list[str],
    metrics=("val/acc", "test/acc"),
    *,
    entity: str | None = None,
    name: str | None = None,
) -> ws.Workspace:
    """A workspace view of one sweep: runs of W&B group ``group``, grouped by the swept keys (``seed`` is
    never a grouping key: a variant's seeds are what each panel aggregates). ``metrics`` is (the metric
    logged every epoch, the final one). ``entity`` defaults to ``WANDB_ENTITY``, else the login's own
    default entity, filled in by ``publish``."""
    curve, final = metrics
    keys = [config_key(k) for k in swept_keys if k != "seed"]
    sections = [
        ws.Section(
            name="Validation curves",
            is_open=True,
            panels=[
                wr.LinePlot(
                    title=f"{curve} by variant (mean ± stderr over seeds)",
                    x="epoch",
                    y=[curve],
                    groupby_aggfunc="mean",
                    groupby_rangefunc="stderr",
                )
            ],
        ),
        ws.Section(
            name="Test accuracy per variant",
            is_open=True,
            panels=[
                wr.BarPlot(
                    title=f"{final} by variant (mean ± stderr over seeds)",
                    metrics=[final],
                    orientation="v",
                    groupby_aggfunc="mean",
                    groupby_rangefunc="stderr",
                )
            ],
        ),
        ws.Section(
            name="Swept options",
            is_open=True,
            panels=[
                wr.ParallelCoordinatesPlot(
                    title=f"swept options and {final}",
                    columns=[wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k)) for k in keys]
                    + [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(final))],
                )
            ],
        ),
        ws.Section(
            name="Report",
            is_open=True,
            panels=[
                wr.WeavePanelSummaryTable(table_name=REPORT_TABLE, layout=wr.Layout(w=24, h=12)),
                wr.RunComparer(diff_only="split"),
            ],
        ),
    ]
    return ws.Workspace(
        entity=entity if entity is not None else os.environ.get("WANDB_ENTITY", ""),
        project=project,
        name=name or f"sweep {group}",
        sections=sections,
        settings=ws.WorkspaceSettings(max_runs=MAX_RUNS),
        runset_settings=ws.RunsetSettings(
            filters=[ws.Metric("Group") == group],
            groupby=[ws.Config(k) for k in keys],
            pinned_columns=[f"summary:{final}"],
        ),
    )


def to_json(spec: ws.Workspace) -> str:
    """The view exactly as ``Workspace.save`` would upload it (the library's own model, by alias)."""
    return spec._to_model().model_dump_json(by_alias=True, exclude_none=True, indent=2)


def load_spec(path) -> ws.Workspace:
    """A workspace read back from ``to_json``'s output."""
    return ws.Workspace._from_model(internal.View.model_validate_json(Path(path).read_text()))


def logged_in() -> bool:
    """Whether a W&B API key is configured (``WANDB_API_KEY``, or what ``wandb login`` saved): what the
    deprecated ``wandb.api.api_key`` reads, without its deprecation notice and without the network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth
    except ImportError:  # another wandb's internals: the public, deprecated property
        return bool(wandb.api.api_key)
    settings = wandb_setup.singleton().settings
    try:
        return bool(wbauth.read_netrc_auth(host=settings.base_url) or settings.api_key)
    except Exception:  # a malformed key in .netrc is no login
        return False


def publish(spec: ws.Workspace, out_dir) -> str:
    """Save the view to W&B and return its URL where a login exists and ``WANDB_MODE`` is not offline;
    otherwise write it to ``out_dir/dashboard.json`` and return a line saying how to publish it."""
    mode = os.environ.get("WANDB_MODE", "online").lower()
    if mode not in OFFLINE_MODES and logged_in():
        if not spec.entity:
            spec.entity = wandb.Api().default_entity
        spec.save()
        return spec.url
    path = Path(out_dir) / "dashboard.json"
    path.write_text(to_json(spec) + "\n")
    why = f"WANDB_MODE={mode}" if mode in OFFLINE_MODES else "no W&B login"
    return (
        f"{why}: wrote the dashboard spec to {path}; to publish it: `wandb login`, then "
        f"`WANDB_MODE=online make dashboard SWEEP={out_dir}`"
    )
