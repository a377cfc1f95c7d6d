"""The report entry: ``python -m recipelab.report <sweep folder>`` (``make report SWEEP=...``).

Writes report.md, report.csv and the plots into the sweep folder and logs a W&B run (job_type=report).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from recipelab.cli import error_boundary
from recipelab.errors import UserError
from recipelab.results.report import report


@error_boundary
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise UserError("usage: python -m recipelab.report <sweep folder>")
    start = time.time()
    rows = report(argv[0])
    print((Path(argv[0]) / "report.md").read_text())
    print(
        f"{len(rows)} variants; report.md, report.csv, accuracy.png, val_curves.png in {argv[0]} "
        f"({time.time() - start:.1f} s)"
    )


if __name__ == "__main__":
    main()
