"""The report entry (``make report SWEEP=... ARGS=...``)::

    python -m recipelab.report [<sweep folder>] [report.baseline=optimizer=sgd]
        [report.metrics=[test/acc,test/nll]] [report.alpha=0.05] [report.allow_mixed_code=false]
        [report.wandb=true] [report.plan_effect=0.005]

Writes report.json, report.md, report.csv and the plots into the sweep folder (default: the newest sweep
under logs/multiruns) and logs a W&B run (job_type=report). With ``report.plan_effect``, the seed plan
(the paired seeds each comparison needs to detect that difference with power 0.8, from this sweep's
spread) is printed with the report and kept in report.json.
"""

from __future__ import annotations

import sys
import time

from recipelab.cli import error_boundary
from recipelab.records import summary
from recipelab.results.report import ReportOptions, parse_args, report

__all__ = ["ReportOptions", "main", "report"]


@error_boundary
def main(argv: list[str] | None = None) -> None:
    sweep, options = parse_args(sys.argv[1:] if argv is None else argv)
    start = time.time()
    doc = report(sweep, options)
    print((sweep / "report.md").read_text())
    summary.emit(summary.report_lines(doc, sweep, summary.written(sweep, start), time.time() - start))


if __name__ == "__main__":
    main()
