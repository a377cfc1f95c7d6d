"""Where a run's seconds before training go (``python -m recipelab.bench --startup [overrides]``).

One ``python -X importtime -m recipelab.train`` of two training steps, with a callback that notes the
time at each stage of the run's set-up; Python's own import timer gives each package's import seconds
(each module's own time, summed by top-level package: torch, lightning, scipy, ... and recipelab). On a
GPU machine it also times CUDA's initialisation alone in a fresh process, and the first step against the
second shows what the first one pays once (cuDNN's algorithm search, a compiled graph).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import lightning as L
import torch

from recipelab.benchmark.runs import QUIET

STAGES = ("built", "fit_setup", "train_start", "first_batch", "first_step_end", "second_step_end")


class StartupClock(L.Callback):
    """Notes ``time.time()`` at each stage: callbacks built (after the imports, the config, the preflight),
    fit's set-up, training's start (data, model on its device, optimizer, sanity check done), the first
    batch, and the end of the first two steps; writes them to ``path`` when the second step ends."""

    def __init__(self, path: str):
        self.path = path
        self.times = {"built": time.time()}

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.times.setdefault("fit_setup", time.time())

    def on_train_start(self, trainer, pl_module) -> None:
        self.times["train_start"] = time.time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.times.setdefault("first_batch", time.time())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        key = "first_step_end" if "first_step_end" not in self.times else "second_step_end"
        self.times.setdefault(key, time.time())
        if key == "second_step_end":
            Path(self.path).write_text(json.dumps(self.times))


def import_seconds_by_package(importtime: str, top: int = 15) -> dict[str, float]:
    """``python -X importtime``'s report (its stderr) → seconds of the ``top`` top-level packages' imports,
    the largest first, and of all the others together (``(others)``): each module's own time (not its
    cumulative one, which counts what it imports)."""
    own: Counter = Counter()
    for line in importtime.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head, _cumulative, name = line.split("|")
        own[name.strip().split(".")[0]] += int(head.split(":")[1])
    ranked = own.most_common()
    seconds = {name: us / 1e6 for name, us in ranked[:top]}
    if len(ranked) > top:
        seconds["(others)"] = sum(us for _, us in ranked[top:]) / 1e6
    return seconds


def cuda_init_seconds() -> float:
    """Seconds a fresh process (torch imported) takes to create CUDA's context: the first tensor on it."""
    code = (
        "import time, torch; t = time.time(); torch.zeros(1, device='cuda'); torch.cuda.synchronize(); "
        "print(time.time() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout)


def profile_startup(overrides: list[str], workdir: Path) -> dict:
    """The seconds from the command to the end of the first two training steps, stage by stage."""
    clock = workdir / "startup_clock.json"
    args = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "recipelab.train",
        f"paths.log_dir={workdir}",
        "+callbacks.startup_clock._target_=recipelab.benchmark.startup.StartupClock",
        f"+callbacks.startup_clock.path={clock}",
        *overrides,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        *QUIET,
    ]
    launched = time.time()
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    times = json.loads(clock.read_text())
    stages = {"launch": launched, **{s: times[s] for s in STAGES}}
    names = list(stages)
    result = {
        # each stage's seconds since the one before it; "built" is launch → the callbacks' construction
        "stages_s": {b: stages[b] - stages[a] for a, b in itertools.pairwise(names)},
        "to_first_step_end_s": times["first_step_end"] - launched,
        "imports_by_package_s": import_seconds_by_package(done.stderr),
        "note": "-X importtime adds its own cost to the imports; first_step_end minus second_step_end's "
        "time is what the first step pays once",
    }
    result["imports_s"] = sum(result["imports_by_package_s"].values())
    # all but the imports, wherever they happened (W&B's comes with its logger, inside fit's set-up)
    result["beyond_imports_s"] = result["to_first_step_end_s"] - result["imports_s"]
    if torch.cuda.is_available():
        result["cuda_init_s"] = cuda_init_seconds()
    return result
