"""The dashboard entry: ``python -m recipelab.dashboard [<sweep folder>]`` (``make dashboard SWEEP=...``).

A W&B workspace for one sweep: its runs (the sweep's W&B group, as its jobs recorded it) grouped by the
swept options (the report's variants). Saved to W&B with a login; otherwise written as the sweep folder's
dashboard.json, with a line saying how to publish it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from recipelab.cli import error_boundary
from recipelab.errors import UserError
from recipelab.results.dashboard import dashboard_spec, publish
from recipelab.results.report import latest_sweep
from recipelab.results.report_jobs import load_jobs, sweep_group, swept_keys
from recipelab.results.wandb_run import project


@error_boundary
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or any("=" in a for a in argv):
        raise UserError("usage: python -m recipelab.dashboard [<sweep folder>]")
    sweep = latest_sweep() if not argv else Path(argv[0])
    if not sweep.is_dir():
        raise UserError(f"sweep folder {sweep} does not exist")
    jobs = load_jobs(sweep)
    print(publish(dashboard_spec(project(), sweep_group(jobs, sweep), swept_keys(jobs)), sweep))


if __name__ == "__main__":
    main()
