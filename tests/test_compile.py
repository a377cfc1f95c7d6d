"""compile=true: the network and the optimizer's update compiled (opt-in; docs/performance.md): the
parameter names of checkpoints kept, the eager outputs, gradients and training, one compile of the update
for a whole lr schedule, compile seconds apart from training, and its refusals."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch._dynamo.utils import counters

from recipelab.build import build_module
from recipelab.data import TensorBatchLoader
from recipelab.errors import UserError
from recipelab.training import compiled
from tests.conftest import train_cli
from tests.training.composed import bare_trainer, compose_train

SMALL = "model.widths=[4,8,8]"


def test_compiled_module_keeps_the_parameter_names_of_checkpoints():
    eager = build_module(compose_train(SMALL), 64)
    fast = build_module(compose_train(SMALL, "compile=true"), 64)
    assert list(fast.state_dict()) == list(eager.state_dict())  # no `_orig_mod.` prefix
    fast.load_state_dict(eager.state_dict())  # an eager checkpoint loads into a compiled run


@pytest.mark.slow
def test_compiled_step_gives_the_eager_outputs_and_gradients():
    """In float64, where reassociated sums differ by ~1e-16: in float32 the first conv's gradient (a sum
    over every pixel through batch norm's backward, whose terms nearly cancel) differs by up to ~7e-4 of
    0.15 between Inductor's fused kernels and the eager ones on some CPUs, which says nothing about
    whether the compiled graph computes the same function."""
    torch.manual_seed(0)
    eager = build_module(compose_train(SMALL), 64).double()
    fast = build_module(compose_train(SMALL, "compile=true"), 64).double()
    fast.load_state_dict(eager.state_dict())
    x, y = torch.randn(16, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (16,))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    outputs = []
    for module in (eager, fast):
        logits = module(x)
        F.cross_entropy(logits, y).backward()
        outputs.append((logits.detach(), [p.grad for p in module.parameters()]))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # compiled, not run eagerly
    (eager_logits, eager_grads), (logits, grads) = outputs
    torch.testing.assert_close(logits, eager_logits, atol=1e-10, rtol=1e-10)
    for g, ref in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(g, ref, atol=1e-10, rtol=1e-10)


N, BATCH, EPOCHS = 64, 8, 2  # 8 steps an epoch, 16 in all: the one-cycle rate changes at every one


class Losses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


def losses_of(*overrides: str) -> tuple[list[float], torch.nn.Module]:
    """A tiny CNN under the default recipe (Nesterov, one-cycle, label smoothing), fp32, fixed data."""
    cfg = compose_train("model.widths=[4]", "model.depth=1", "channels_last=false", *overrides)
    torch.manual_seed(0)
    module = build_module(cfg)
    x = torch.randn(N, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.arange(N) % 10
    trace = Losses()
    trainer = bare_trainer(max_epochs=EPOCHS, callbacks=[trace])
    trainer.fit(module, train_dataloaders=TensorBatchLoader(x, y, batch_size=BATCH, shuffle=False))
    return trace.losses, module.model


@pytest.mark.slow
def test_the_compiled_step_trains_as_the_eager_one_and_compiles_its_update_once():
    eager, eager_model = losses_of()
    graphs = counters["stats"]["unique_graphs"]
    fast, fast_model = losses_of("compile=true")
    assert len(fast) == len(eager) == EPOCHS * N // BATCH
    assert fast == pytest.approx(eager, abs=1e-4)  # the same 16 steps: one lr schedule, the same update
    for (name, a), b in zip(eager_model.state_dict().items(), fast_model.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=name)
    # graphs: the network's forward (and its backward), the update; a float rate would add one per new rate
    assert 0 < counters["stats"]["unique_graphs"] - graphs < 8
    assert compiled.compile_seconds() > 0


def test_the_update_compiles_once_for_a_changing_rate():
    """The rate is a tensor filled in place: 12 steps at the scheduler's changing rates, no compile for
    a new rate."""
    torch._dynamo.reset()  # what earlier tests compiled (e.g. in float64) must not shape this count
    model = torch.nn.Linear(3, 2)
    eager = copy.deepcopy(model)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9) for m in (model, eager)]
    compiled.compile_step(optimizers[0])
    schedulers = [torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=12) for o in optimizers]
    before = counters["stats"]["unique_graphs"]
    x, y = torch.randn(16, 3, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 2
    rates, graphs = [], []
    for _ in range(12):
        for m, o, s in zip((model, eager), optimizers, schedulers, strict=True):
            o.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            o.step()
            s.step()
        rates.append(float(optimizers[0].param_groups[0]["lr"]))
        assert rates[-1] == pytest.approx(optimizers[1].param_groups[0]["lr"], rel=1e-6)
        graphs.append(counters["stats"]["unique_graphs"] - before)
    assert len(set(rates[1:])) > 8  # more rates than Dynamo's cache holds graphs of one function
    # compiled at the first step, and at the second, which finds the momentum buffers; never again
    assert graphs[0] > 0 and graphs[2:] == [graphs[1]] * 10
    torch.testing.assert_close(model.weight, eager.weight)


@pytest.mark.parametrize(
    ("target", "mode", "accelerator", "message"),
    [
        ("recipelab.training.optim.lbfgs", "default", "cpu", "L-BFGS evaluates the loss inside its update"),
        ("torch.optim.SGD", "reduce-overhead", "cpu", "captures CUDA graphs, which need a GPU"),
        ("torch.optim.SGD", "fastest", "gpu", "compile_mode='fastest': choose one of default, "),
    ],
)
def test_what_compile_refuses(target, mode, accelerator, message):
    with pytest.raises(UserError, match=message):
        compiled.check(target, mode, accelerator)
    compiled.check("torch.optim.SGD", "default", "cpu")  # what it takes


def test_compile_with_lbfgs_is_refused_in_one_line_before_training(tmp_path):
    run = train_cli(tmp_path, "compile=true", "optimizer=lbfgs")
    assert run.proc.returncode == 2
    (line,) = [line for line in run.proc.stderr.splitlines() if line.startswith("error:")]
    assert "compile=true with optimizer=lbfgs" in line
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_a_compiled_run_reports_its_compile_seconds_apart(tmp_path, one_epoch_run):
    tiny = ("model=mlp", "model.hidden=[16]", "trainer=cpu", "trainer.limit_train_batches=5")
    run = train_cli(tmp_path, "-m", "compile=true", *tiny, "seed=1,2")  # two jobs in one process
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    jobs = [run.metrics(d) for d in run.run_dirs]
    assert [m["seed"] for m in jobs] == [1, 2]
    for m in jobs:  # compiling is part of training's first steps: each job's own
        assert 0 < m["compile_s"] < m["train_time_s"]
    assert "compile_s" not in one_epoch_run.metrics()  # an eager run has none
