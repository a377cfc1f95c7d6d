"""Dependencies point down (DESIGN.md): entries → run → build → training / models / data; results → build;
run, build and results → records. Read from the source with ``ast``, function-level imports included."""

import ast
from pathlib import Path

import pytest

import recipelab

PACKAGE = Path(recipelab.__file__).parent


def imported(path: Path) -> set[str]:
    """Every ``recipelab`` module a file imports, anywhere in it (``from recipelab.x import y`` → x, x.y)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.startswith("recipelab")}


def files(where: str, skip=()) -> list[Path]:
    found = [PACKAGE / where] if where.endswith(".py") else sorted((PACKAGE / where).rglob("*.py"))
    return [f for f in found if f.name not in skip]


def under(name: str, layer: str) -> bool:
    return name == f"recipelab.{layer}" or name.startswith(f"recipelab.{layer}.")


# (files, the layers they must not import): the results entry (results/__main__.py) is an entry, not results/
RULES = [
    ("build.py", ("run", "results", "cli", "train", "evaluate", "ensemble", "report")),
    ("results", ("run", "cli", "train")),
    ("records", ("run", "build", "results", "cli", "training", "models", "data", "benchmark")),
    ("training", ("run", "build", "results", "cli")),
    ("models", ("run", "build", "results", "cli", "training")),
    ("data", ("run", "build", "results", "cli", "training", "models")),
]


@pytest.mark.parametrize(("where", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_imports_point_down(where, forbidden):
    wrong = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in files(where, skip=("__main__.py",))
        for name in imported(path)
        if any(under(name, layer) for layer in forbidden)
    }
    assert not wrong, sorted(wrong)


def test_the_reader_sees_imports_inside_functions(tmp_path):
    """The check above would pass vacuously if ``imported`` missed a function-level import."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from recipelab.run import sweep\n    import recipelab.cli\n")
    assert {"recipelab.run", "recipelab.run.sweep", "recipelab.cli"} <= imported(source)


def defined(path: Path) -> set[str]:
    """The module-level and function names a file defines."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_the_records_are_the_only_home_of_the_run_folder_files():
    """One home: no other module defines the record's name, the last checkpoint or the JSON writer."""
    shared = {"RECORD", "LAST", "CONF_DIR", "write_json", "read_record", "run_files"}
    homes = {path.relative_to(PACKAGE).as_posix() for path in files(".") if defined(path) & shared}
    assert homes == {"records/folder.py", "records/tracking.py", "records/wandb_file.py"}
