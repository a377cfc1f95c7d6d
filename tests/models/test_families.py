"""Every network family × every normalization option: builds for both dataset shapes, learns one batch."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from recipelab.errors import UserError
from recipelab.models import MLP, ConvNet, NormSpec, PreActResNet, TorchvisionClassifier, WideResNet

CONF = Path(__file__).resolve().parents[2] / "conf"
NORMS = {  # the normalization options of conf/normalization/ (groups=2: tiny widths still have groups)
    "batchnorm": NormSpec(),
    "batchnorm_post": NormSpec(position="post"),
    "layernorm": NormSpec(kind="layernorm"),
    "groupnorm": NormSpec(kind="groupnorm", groups=2),
    "instancenorm": NormSpec(kind="instancenorm"),
    "none": NormSpec(kind="none"),
}
TINY = {  # each family at the smallest size that still has all its parts
    "cnn": lambda **kw: ConvNet(widths=(8, 16), depth=1, **kw),
    "mlp": lambda **kw: MLP(hidden=(32, 16), **kw),
    "resnet": lambda **kw: PreActResNet(depth=18, width=4, **kw),
    "wrn": lambda **kw: WideResNet(depth=10, width=1, **kw),
    "torchvision": lambda **kw: TorchvisionClassifier("shufflenet_v2_x0_5", **kw),
}
CLASSES = {
    "cnn": ConvNet,
    "mlp": MLP,
    "resnet": PreActResNet,
    "wrn": WideResNet,
    "torchvision": TorchvisionClassifier,
}
REFUSED = {("mlp", "instancenorm")} | {("torchvision", n) for n in NORMS if n != "batchnorm"}
SHAPES = [(1, 28), (3, 32)]
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is faster, and a second one spin-waits when other processes share the CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _expected_norms(family: str, option: str) -> set[type]:
    if family == "torchvision":
        return {nn.BatchNorm2d}
    if option == "none":
        return set()
    if family == "mlp":
        return {"layernorm": {nn.LayerNorm}, "groupnorm": {nn.GroupNorm}}.get(option, {nn.BatchNorm1d})
    return {nn.BatchNorm2d} if option.startswith("batchnorm") else {nn.GroupNorm}


def _batch(channels: int, size: int, n: int = 16):
    """Each class a coarse random pattern (which survives per-sample norms and global pooling) plus noise."""
    g = torch.Generator().manual_seed(1)
    patterns = nn.functional.interpolate(torch.randn(10, channels, 4, 4, generator=g), size=(size, size))
    y = torch.arange(n) % 10
    return patterns[y] + 0.3 * torch.randn(n, channels, size, size, generator=g), y


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("option", NORMS)
@pytest.mark.parametrize("family", TINY)
def test_every_family_and_norm_builds_and_learns_a_batch(family, option, shape):
    norm, (channels, size) = NORMS[option], shape
    reason = CLASSES[family].refuse(norm, 0.0, 0.0)
    assert (reason is not None) == ((family, option) in REFUSED)
    if reason:
        assert isinstance(reason, str) and "\n" not in reason
        with pytest.raises(UserError):
            TINY[family](norm=norm, in_channels=channels, num_classes=10, image_size=size)
        return
    torch.manual_seed(0)
    model = TINY[family](norm=norm, in_channels=channels, num_classes=10, image_size=size)
    assert {type(m) for m in model.modules() if isinstance(m, NORM_TYPES)} == _expected_norms(family, option)
    x, y = _batch(channels, size)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(8):
        opt.zero_grad()
        out = model(x)
        assert out.shape == (16, 10)
        loss = nn.functional.cross_entropy(out, y)
        loss.backward()
        if step == 0:  # every parameter takes part
            assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    # below what the labels' frequencies alone give (so the input is used), and a tenth below the start;
    # instance norm right before global pooling leaves each channel only its distribution's shape: slower
    prior = torch.bincount(y) / len(y)
    assert losses[-1] < -(prior * prior.log()).sum().item(), losses
    assert losses[-1] < (0.97 if (family, option) == ("cnn", "instancenorm") else 0.9) * losses[0], losses


def _plain_copy(model: MLP) -> MLP:
    """The same MLP without DropConnect, holding the same weights."""
    plain = MLP(hidden=(32, 16), norm=NormSpec(kind="none"))
    state = {
        k.replace("parametrizations.weight.original", "weight"): v for k, v in model.state_dict().items()
    }
    plain.load_state_dict(state)
    return plain


def test_mlp_dropconnect_masks_every_layer_in_training_only():
    torch.manual_seed(0)
    model = MLP(hidden=(32, 16), norm=NormSpec(kind="none"), dropconnect=0.5)
    plain, x = _plain_copy(model), torch.randn(8, 1, 28, 28)
    layers = [block[0] for block in model.features] + [model.head]
    assert len(layers) == 3 and all(hasattr(m, "parametrizations") for m in layers)
    model.eval()
    assert torch.equal(model(x), plain(x))
    assert all((m.weight != 0).all() for m in layers)  # the plain weights
    model.train()
    assert not torch.allclose(model(x), plain(x))
    for m in layers:  # about half of each layer's weights dropped, the kept ones scaled by 1/(1-p)
        w, original = m.weight, m.parametrizations.weight.original
        assert 0.4 < (w == 0).float().mean() < 0.6
        assert torch.allclose(w[w != 0], 2 * original[w != 0])


def test_mlp_layers_and_norm_placement():
    pre = MLP(hidden=(8,), norm=NormSpec()).features[0]
    post = MLP(hidden=(8,), norm=NormSpec(position="post"), dropout=0.25).features[0]
    assert [type(m).__name__ for m in pre] == ["Linear", "BatchNorm1d", "ReLU", "Dropout"]
    assert [type(m).__name__ for m in post] == ["Linear", "ReLU", "BatchNorm1d", "Dropout"]
    assert pre[0].bias is None and post[0].bias is not None and post[3].p == 0.25
    widths = [(b[0].in_features, b[0].out_features) for b in MLP(image_size=28).features]
    assert widths == [(784, 256), (256, 128), (128, 100)]  # the benchmark table's 256-128-100
    assert MLP(in_channels=3, image_size=32).features[0][0].in_features == 3 * 32 * 32


def test_norm_factory_makes_feature_vector_norms():
    x = torch.randn(6, 8) * 4 + 2
    made = {k: NormSpec(kind=k, groups=2)(8, dims=1) for k in ("batchnorm", "layernorm", "groupnorm", "none")}
    assert [type(m) for m in made.values()] == [nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm, nn.Identity]
    y = made["layernorm"](x).detach()
    assert torch.allclose(y.mean(1), torch.zeros(6), atol=1e-5)
    assert type(NormSpec()(8)) is nn.BatchNorm2d  # conv maps unchanged
    assert NormSpec(kind="instancenorm").refusal(dims=1) and NormSpec(kind="instancenorm").refusal() is None
    with pytest.raises(UserError, match="instancenorm"):
        NormSpec(kind="instancenorm")(8, dims=1)


def test_options_a_model_cannot_honour_are_refused():
    for cls in (ConvNet, MLP, PreActResNet, WideResNet, TorchvisionClassifier):
        assert cls.refuse(NormSpec(), 0.5, 0.5) is None
    assert "layernorm" in MLP.refuse(NormSpec(kind="instancenorm"), 0, 0)
    assert "normalization=batchnorm" in TorchvisionClassifier.refuse(NormSpec(kind="layernorm"), 0, 0)
    assert "batchnorm_post" in TorchvisionClassifier.refuse(NormSpec(position="post"), 0, 0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: WideResNet(depth=20), "model.depth=20"),
        (lambda: PreActResNet(depth=50), "model.depth=50"),
        (lambda: MLP(hidden=[]), "model.hidden"),
        (lambda: TorchvisionClassifier("resnet19"), "model.name='resnet19'"),
        (lambda: TorchvisionClassifier("squeezenet1_1"), "no final Linear"),
    ],
)
def test_bad_model_values_are_one_line_user_errors(build, message):
    with pytest.raises(UserError, match=message) as err:
        build()
    assert "\n" not in str(err.value)


def test_published_sizes():
    with torch.device("meta"):  # no memory, no init time
        count = {
            "WRN-16-4": WideResNet(),
            "WRN-28-10": WideResNet(depth=28, width=10),
            "PreActResNet-18": PreActResNet(),
        }
    count = {k: sum(p.numel() for p in m.parameters()) for k, m in count.items()}
    # 36,479,194 is the published count of WRN-28-10 on CIFAR-10
    assert count == {"WRN-16-4": 2_748_890, "WRN-28-10": 36_479_194, "PreActResNet-18": 11_172_170}


def test_wrn_dropout_sits_between_the_convs_and_the_head_takes_dropconnect():
    model = WideResNet(depth=10, width=1, dropout=0.3, dropconnect=0.2)
    block = model.stages[1][0]
    assert block.dropout.p == 0.3 and isinstance(block.shortcut, nn.Conv2d)
    assert hasattr(model.head, "parametrizations")
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 3  # one per block


def test_torchvision_stem_head_and_dropout():
    resnet = TorchvisionClassifier("resnet18", in_channels=1, num_classes=7, image_size=28, dropout=0.2)
    stem = resnet.net.conv1
    assert (stem.in_channels, stem.kernel_size, stem.stride) == (1, (3, 3), (1, 1))
    assert isinstance(resnet.net.maxpool, nn.Identity) and resnet.dropout.p == 0.2
    assert resnet.head.out_features == 7 and isinstance(resnet.net.fc, nn.Identity)
    norm = NormSpec(eps=1e-3, momentum=0.01)
    mobile = TorchvisionClassifier(
        "mobilenet_v3_small", in_channels=1, dropout=0.1, dropconnect=0.3, norm=norm
    )
    assert mobile.net.features[0][0].in_channels == 1 and mobile.dropout.p == 0.0
    assert mobile.net.classifier[2].p == 0.1  # its own dropout takes the option
    bns = [m for m in mobile.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)
    assert hasattr(mobile.head, "parametrizations")


# ConvNet() before the families existed (checkpoints must keep loading): 3 stages × 2 blocks, then the head
BLOCKS = ["features.0.0", "features.0.1", "features.1.0", "features.1.1", "features.2.0", "features.2.1"]
IN_BLOCK = ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"]
CONVNET_KEYS = [f"{block}.{key}" for block in BLOCKS for key in IN_BLOCK] + ["head.weight", "head.bias"]


def test_convnet_state_dict_keys_are_unchanged():
    assert list(ConvNet().state_dict()) == CONVNET_KEYS
    with_dropconnect = list(ConvNet(dropconnect=0.3).state_dict())
    assert with_dropconnect[-2:] == ["head.bias", "head.parametrizations.weight.original"]


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
def test_model_yaml_takes_the_shape_from_the_data_config(option):
    assert option in {"cnn", "mlp", "resnet", "wrn", "torchvision"}
    data = OmegaConf.create({"data": {"in_channels": 3, "num_classes": 5, "image_size": 32}})
    cfg = OmegaConf.merge(data, {"model": OmegaConf.load(CONF / "model" / f"{option}.yaml")})
    assert (cfg.model.in_channels, cfg.model.num_classes, cfg.model.image_size) == (3, 5, 32)
    model = instantiate(cfg.model, _partial_=True)(norm=NormSpec(), dropout=0.1, dropconnect=0.1)
    assert isinstance(model, CLASSES[option])
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 5)
