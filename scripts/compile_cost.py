"""Does `compile=true` pay here? The default recipe's plain training step, eager and torch.compile'd,
alternated step by step in one process (the machine's speed drifts; paired steps cancel the drift).

python scripts/compile_cost.py [steps] [overrides ...]
Prints the compile time (the compiled model's first steps) and the mean step time of both after warm-up.
"""

import sys
import time

from recipelab.benchmark.plain import PlainLoop
from recipelab.benchmark.runs import compose_cfg
from recipelab.build import build_datamodule

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 60
overrides = sys.argv[2:]
datamodule = build_datamodule(compose_cfg(overrides), augment=False)
datamodule.setup()
images, labels = datamodule.splits["train"]
loops = {
    name: PlainLoop(compose_cfg([*overrides, f"compile={flag}"]), images, labels, 256, datamodule.stats)
    for name, flag in (("eager", "false"), ("compiled", "true"))
}
start = time.perf_counter()
for _ in range(3):  # the first steps compile forward and backward
    loops["compiled"].step()
print(f"compile (3 warm-up steps): {time.perf_counter() - start:.1f} s")
for _ in range(3):
    loops["eager"].step()
totals = dict.fromkeys(loops, 0.0)
for _ in range(steps):
    for name, loop in loops.items():
        t = time.perf_counter()
        loop.step()
        totals[name] += time.perf_counter() - t
eager, compiled = (totals[n] / steps * 1000 for n in ("eager", "compiled"))
print(f"eager {eager:.1f} ms/step, compiled {compiled:.1f} ms/step, speed-up {eager / compiled:.3f}x")
