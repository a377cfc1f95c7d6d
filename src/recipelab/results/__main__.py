"""The results entry: ``python -m recipelab.results [folder]`` (``make results [DIR=logs]``).

Every run's metrics.json under the folder (default ``logs``) as one row of ``results.csv`` in that folder
(and ``results.parquet`` where pyarrow is installed): run folder, name, group, every group choice, seed,
status, overrides, every metric, cost (train and wall time, epochs, steps) and provenance.
"""

from __future__ import annotations

import sys

from recipelab.cli import error_boundary
from recipelab.errors import UserError
from recipelab.results.table import write_table


@error_boundary
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1:
        raise UserError("usage: python -m recipelab.results [folder]")
    path, count = write_table(argv[0] if argv else "logs")
    extra = " (and results.parquet)" if path.with_suffix(".parquet").is_file() else ""
    print(f"{count} runs: {path}{extra}")


if __name__ == "__main__":
    main()
