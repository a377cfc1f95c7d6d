"""compile=true: the model is torch.compile'd in place (opt-in; see docs/performance.md, "Performance")."""

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F

from recipelab.build import build_module
from tests.training.composed import compose_train

SMALL = "model.widths=[4,8,8]"


def test_compiled_module_keeps_the_parameter_names_of_checkpoints():
    eager = build_module(compose_train(SMALL), 64)
    compiled = build_module(compose_train(SMALL, "compile=true"), 64)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no `_orig_mod.` prefix
    compiled.load_state_dict(eager.state_dict())  # an eager checkpoint loads into a compiled run


@pytest.mark.slow
def test_compiled_step_gives_the_eager_outputs_and_gradients():
    torch.manual_seed(0)
    eager = build_module(compose_train(SMALL), 64)
    compiled = build_module(compose_train(SMALL, "compile=true"), 64)
    compiled.load_state_dict(eager.state_dict())
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    outputs = []
    for module in (eager, compiled):
        logits = module(x)
        F.cross_entropy(logits, y).backward()
        outputs.append((logits.detach(), [p.grad for p in module.parameters()]))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # compiled, not run eagerly
    (eager_logits, eager_grads), (logits, grads) = outputs
    torch.testing.assert_close(logits, eager_logits, atol=1e-4, rtol=1e-4)
    for g, ref in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4)
