"""The normalization factory: batch norm's arithmetic, and every normalization option of conf/."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from recipelab.errors import UserError
from recipelab.models import ConvNet, NormSpec

CONF = Path(__file__).resolve().parents[2] / "conf"
OPTIONS = sorted(p.stem for p in (CONF / "normalization").glob("*.yaml"))


def _batch(n=32, c=4):
    g = torch.Generator().manual_seed(0)
    return 3.0 + 2.0 * torch.randn(n, c, 5, 5, generator=g)  # far from zero mean and unit variance


def _batch_stats(x):
    return x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)


def test_batchnorm_standardizes_each_channel_before_gamma_and_beta():
    x, eps = _batch(), 1e-5
    bn = NormSpec(eps=eps)(4).train()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    gamma, beta = bn.weight[None, :, None, None], bn.bias[None, :, None, None]
    z = ((bn(x) - beta) / gamma).detach()
    mean, var = _batch_stats(z)
    assert torch.allclose(mean, torch.zeros(4), atol=1e-5)
    assert torch.allclose(var, torch.ones(4), atol=1e-3)  # var/(var+eps), just under 1
    mu, sigma2 = _batch_stats(x)
    expected = (x - mu[None, :, None, None]) / (sigma2[None, :, None, None] + eps).sqrt()
    assert torch.allclose(z, expected, atol=1e-5)


def test_batchnorm_with_gamma_sigma_and_beta_mu_returns_its_input():
    x, eps = _batch(), 1e-5
    bn = NormSpec(eps=eps)(4).train()
    mu, sigma2 = _batch_stats(x)
    with torch.no_grad():
        bn.weight.copy_((sigma2 + eps).sqrt())
        bn.bias.copy_(mu)
    assert torch.allclose(bn(x), x, atol=1e-4)


def test_eval_uses_the_running_statistics():
    eps, momentum = 1e-5, 0.3
    bn = NormSpec(eps=eps, momentum=momentum)(4).train()
    mean, var = torch.zeros(4), torch.ones(4)
    for seed in range(3):
        x = _batch() + seed
        bn(x)
        n = x.numel() // 4  # the running variance is the unbiased estimate
        mu, sigma2 = _batch_stats(x)
        mean = (1 - momentum) * mean + momentum * mu
        var = (1 - momentum) * var + momentum * sigma2 * n / (n - 1)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5) and torch.allclose(bn.running_var, var, atol=1e-4)
    bn.eval()
    x = _batch()
    expected = (x - mean[None, :, None, None]) / (var[None, :, None, None] + eps).sqrt()
    assert torch.allclose(bn(x), expected, atol=1e-4)
    assert torch.allclose(bn(x[:1]), expected[:1], atol=1e-4)  # a sample's output ignores its batch


@pytest.mark.parametrize(
    ("kind", "dims"),
    [("layernorm", (1, 2, 3)), ("instancenorm", (2, 3)), ("groupnorm", (2, 3, 4))],
)
def test_per_sample_norms_standardize_over_their_axes(kind, dims):
    x = _batch(n=3, c=16) * torch.arange(1, 4.0)[:, None, None, None]  # each sample its own scale
    y = NormSpec(kind=kind, groups=4)(16)(x).detach()
    if kind == "groupnorm":
        y = y.view(3, 4, 4, 5, 5)  # 4 groups of 4 channels
    assert torch.allclose(y.mean(dims), torch.zeros(()), atol=1e-4)
    assert torch.allclose(y.var(dims, unbiased=False), torch.ones(()), atol=1e-3)


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_options_are_the_documented_set():
    expected = {"batchnorm", "batchnorm_post", "layernorm", "groupnorm", "instancenorm", "none"}
    assert set(OPTIONS) == expected


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_builds_and_trains_a_step(option):
    cfg = _compose(f"normalization={option}")
    spec = instantiate(cfg.normalization)
    model = ConvNet(widths=(8, 16), depth=1, norm=spec)
    conv, *rest = model.features[1][0]  # the block 8 → 16 channels
    norm = next(m for m in rest if not isinstance(m, nn.ReLU))
    expected = {  # the layer, its number of groups (GroupNorm), and whether it comes after the ReLU
        "batchnorm": (nn.BatchNorm2d, None, False),
        "batchnorm_post": (nn.BatchNorm2d, None, True),
        "layernorm": (nn.GroupNorm, 1, False),
        "groupnorm": (nn.GroupNorm, 8, False),
        "instancenorm": (nn.GroupNorm, 16, False),
        "none": (nn.Identity, None, False),
    }[option]
    assert (type(norm), getattr(norm, "num_groups", None), isinstance(rest[0], nn.ReLU)) == expected
    assert (conv.bias is None) == (option not in ("batchnorm_post", "none"))  # a norm's shift replaces it
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"kind": "weightnorm"}, "normalization.kind='weightnorm'"),
        ({"position": "middle"}, "normalization.position='middle'"),
        ({"eps": 0.0}, "normalization.eps=0.0"),
        ({"momentum": 1.5}, "normalization.momentum=1.5"),
        ({"groups": 0}, "normalization.groups=0"),
    ],
)
def test_bad_values_are_refused(bad, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        NormSpec(**bad)
