"""``compile=true``: the network and the optimizer's update compiled with torch.compile.

The network is compiled in place (``nn.Module.compile``: parameter names, and so checkpoints, stay those
of the plain model). The update is compiled by ``compile_step``, following torch's recipe for a compiled
optimizer under an lr scheduler: each group's lr becomes a 0-d tensor that the scheduler fills in place,
so a changing rate is data, not a constant the compiled code is guarded on (a float would recompile it at
every new rate). Lightning still calls ``optimizer.step(closure)``: the closure (forward and backward,
through the compiled network) runs first, then the compiled update without it.

What it refuses, each in one line before any training: L-BFGS (it evaluates the loss inside its update);
``compile_mode=reduce-overhead`` on the CPU (it captures CUDA graphs). A last partial batch is not refused:
its shape compiles once more, the first time it comes.
"""

from __future__ import annotations

import types

import torch

from recipelab.errors import UserError

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check(optimizer_target: str, mode: str, accelerator: str) -> None:
    """The refusals above, from the composed config's values."""
    if mode not in MODES:
        raise UserError(f"compile_mode={mode!r}: choose one of {', '.join(MODES)}")
    if optimizer_target.rsplit(".", 1)[-1].lower() == "lbfgs":
        raise UserError(
            "compile=true with optimizer=lbfgs: L-BFGS evaluates the loss inside its update, which cannot be "
            "compiled; use compile=false"
        )
    if mode == "reduce-overhead" and accelerator == "cpu":
        raise UserError(
            "compile_mode=reduce-overhead captures CUDA graphs, which need a GPU (trainer=gpu); on the CPU "
            "use compile_mode=default"
        )


def compile_step(optimizer: torch.optim.Optimizer, mode: str = "default") -> torch.optim.Optimizer:
    """Compile ``optimizer.step`` in place, before a scheduler is built on it (torch's schedulers take a
    tensor rate as they take a float, and count the steps of the ``step`` they find)."""
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]))
    update = optimizer.step

    @torch.compile(mode=mode)
    def compiled_update() -> None:
        update()

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        compiled_update()
        return loss

    optimizer.step = types.MethodType(step, optimizer)  # a bound method, as schedulers expect to wrap
    return optimizer


def compile_seconds() -> float:
    """The seconds torch.compile has spent in this process (Dynamo's frame and backward compiles):
    torch's own account, of which ``metrics.json`` reports a job's own part as ``compile_s`` beside the
    training time (in a ``-m`` sweep the process has compiled for the jobs before too)."""
    from torch._dynamo.utils import calculate_time_spent  # torch's account; no public equivalent

    return round(calculate_time_spent().get("total_wall_time", 0.0), 2)
