"""The report entry ends with each variant's numbers from its report.json, the verdicts, and its files."""

import json
import re

import pytest

from recipelab.report import main
from tests.conftest import printed_numbers
from tests.test_report import make_sweep


def test_the_report_ends_with_the_numbers_of_its_report_json(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    main([str(sweep), "report.wandb=false"])
    doc = json.loads((sweep / "report.json").read_text())
    baseline, variants = doc["baseline"]["variant"], doc["variants"]
    compared = {c["variant"]: c for c in doc["comparisons"] if c["metric"] == "test/acc"}
    head, *rows, wrote = capsys.readouterr().out.splitlines()[-len(variants) - 2 :]
    assert head == f"report: {len(variants)} variant{'' if len(variants) == 1 else 's'}, baseline {baseline}"
    for row, variant in zip(rows, variants, strict=True):
        name, n, rest = re.fullmatch(r"  (\S+)\s+n=(\d+)  (.*)", row).groups()
        acc = variant["metrics"]["test/acc"]
        assert (name, int(n)) == (variant["variant"], acc["n"])
        assert printed_numbers(rest)["acc"] == pytest.approx(acc["mean"], abs=5e-5)
        if name == baseline:
            assert rest.endswith("  baseline")
        else:  # the difference to the baseline and its verdict
            diff, verdict = rest.split("  ")[1].split(" to the baseline: ")
            assert float(diff) == pytest.approx(compared[name]["mean_diff"], abs=5e-5)
            assert verdict == compared[name]["verdict"]["verdict"]
    files = wrote.removeprefix("wrote ").split(f" in {sweep} (")[0].split(", ")
    assert {"report.json", "report.md", "report.csv"} <= set(files)
    assert all((sweep / f).is_file() for f in files)
