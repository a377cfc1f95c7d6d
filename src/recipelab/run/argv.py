"""The command line of a Hydra entry: Hydra's flags apart from the overrides, and ``--config-dir``."""

from __future__ import annotations

from pathlib import Path

from recipelab.errors import UserError


def config_dirs(flags: list[str]) -> list[str]:
    """``--config-dir <dir>`` (another folder of configs, searched after conf/) as the search-path override
    that the compose API understands."""
    dirs = [flags[i + 1] for i, f in enumerate(flags[:-1]) if f in ("--config-dir", "-cd")]
    dirs += [f.split("=", 1)[1] for f in flags if f.split("=", 1)[0] in ("--config-dir", "-cd") and "=" in f]
    for d in dirs:
        if not Path(d).is_dir():
            raise UserError(f"--config-dir {d}: no such folder")
    return [f"hydra.searchpath=[{','.join(f'file://{Path(d).resolve()}' for d in dirs)}]"] if dirs else []


def split_argv(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's flags (and their values) apart from the overrides."""
    flags, overrides, it = [], [], iter(args)
    for arg in it:
        if arg.split("=")[0] in ("--config-name", "-cn", "--config-path", "-cp"):
            raise UserError(
                f"{arg}: not supported (the entry composes conf/); add a folder of your own configs with "
                "--config-dir <folder> (e.g. <folder>/experiment/mine.yaml, then experiment=mine)"
            )
        if arg.startswith("-"):
            flags.append(arg)
            if arg in ("--cfg", "-c", "--package", "-p", "--config-dir", "-cd"):  # flags that take a value
                flags.append(next(it, ""))
        else:
            overrides.append(arg)
    return flags, overrides
