"""k seeds as one SeedStack train as k separate networks would: compared against separate networks.

Tolerances: the loop runs each copy through the same operations on the same values as its separate
network, and SGD's update is elementwise, so its copies match the separate runs bit for bit. ``vmap``
turns the copies' convolutions into one grouped convolution, which sums in another order: float32
reassociation (~1e-7 relative a step) grows through 30 steps to ~1e-5, so it is held to 1e-4.
"""

import pytest
import torch
import torch.nn.functional as F

from recipelab.models import MLP, ConvNet, NormSpec
from recipelab.models.seed_stack import SeedStack

SEEDS = (1, 2, 3)
FAMILIES = {
    "cnn": lambda **kw: ConvNet(widths=(8, 16), depth=1, norm=NormSpec(), **kw),
    "mlp": lambda **kw: MLP(hidden=(32, 16), norm=NormSpec(), **kw),
}


def seeded(family: str, seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return FAMILIES[family](**kwargs)


def batches(steps: int, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A different batch for every copy and step: [steps, k, n, 1, 28, 28] and [steps, k, n]."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(steps, len(SEEDS), n, 1, 28, 28, generator=g)
    return x, torch.randint(0, 10, (steps, len(SEEDS), n), generator=g)


def sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


def train_separately(family: str, x, y):
    nets = [seeded(family, s) for s in SEEDS]
    opts = [sgd(n.parameters()) for n in nets]
    losses = []
    for xs, ys in zip(x, y, strict=True):
        step = []
        for i, (net, opt) in enumerate(zip(nets, opts, strict=True)):
            loss = F.cross_entropy(net(xs[i]), ys[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step.append(loss.item())
        losses.append(step)
    return nets, torch.tensor(losses)


def train_stacked(family: str, x, y, vectorize: bool):
    stack = SeedStack([seeded(family, s) for s in SEEDS], vectorize=vectorize)
    opt = sgd(stack.parameters())
    losses = []
    for xs, ys in zip(x, y, strict=True):
        logits = stack(xs)  # each copy's loss is its own mean; their sum gives each copy its own gradient
        loss = torch.stack([F.cross_entropy(out, t) for out, t in zip(logits, ys, strict=True)])
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        losses.append(loss.tolist())
    return stack, torch.tensor(losses)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_copy_starts_as_its_seed_bit_for_bit(family):
    stack = SeedStack([seeded(family, s) for s in SEEDS])
    for i, s in enumerate(SEEDS):
        own = seeded(family, s).state_dict()
        got = stack.copy_state_dict(i)
        assert got.keys() == own.keys()
        assert all(torch.equal(got[k], own[k]) for k in own)


@pytest.mark.parametrize(
    ("family", "vectorize", "tol"), [("cnn", False, 0), ("mlp", False, 0), ("cnn", True, 1e-4)]
)
def test_thirty_steps_match_separate_networks(family, vectorize, tol):
    x, y = batches(30)
    nets, separate = train_separately(family, x, y)
    stack, stacked = train_stacked(family, x, y, vectorize)
    torch.testing.assert_close(stacked, separate, rtol=tol, atol=tol)
    for i, net in enumerate(nets):  # weights and batch norm's running statistics, copy by copy
        own, got = net.state_dict(), stack.copy_state_dict(i)
        for k in own:
            torch.testing.assert_close(got[k], own[k], rtol=tol, atol=tol, msg=f"copy {i} {k}")


def test_a_copys_loss_reaches_only_its_own_weights():
    stack = SeedStack([seeded("cnn", s) for s in SEEDS])
    x, y = batches(1)
    F.cross_entropy(stack(x[0])[1], y[0, 1]).backward()  # copy 1's loss alone
    for p in stack.parameters():
        assert p.grad[1].abs().sum() > 0
        assert p.grad[0].abs().sum() == 0 and p.grad[2].abs().sum() == 0


@pytest.mark.parametrize("vectorize", [False, True])
def test_copies_draw_their_own_dropout_masks(vectorize):
    stack = SeedStack([seeded("mlp", 1, dropout=0.5) for _ in SEEDS], vectorize=vectorize)  # equal weights
    x = torch.randn(1, 16, 1, 28, 28).expand(len(SEEDS), -1, -1, -1, -1)  # and the same batch
    stack.eval()
    out = stack(x)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # no dropout: the copies agree
    stack.train()
    out = stack(x)
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])
