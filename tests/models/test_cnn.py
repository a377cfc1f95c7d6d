import torch

from recipelab.models import ConvNet, NormSpec


def test_default_cnn_is_the_73k_reference_shape():
    model = ConvNet()
    n = sum(p.numel() for p in model.parameters())
    # 6 convs of 3x3 (1→16→16→32→32→64→64, no bias before batch norm), BN affine, 64→10 head
    convs = 9 * (1 * 16 + 16 * 16 + 16 * 32 + 32 * 32 + 32 * 64 + 64 * 64)
    bn = 2 * 2 * (16 + 32 + 64)
    assert n == convs + bn + 64 * 10 + 10
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)


def test_norm_position_follows_the_spec():
    pre = ConvNet(widths=(8,), depth=1, norm=NormSpec(position="pre")).features[0][0]
    post = ConvNet(widths=(8,), depth=1, norm=NormSpec(position="post")).features[0][0]
    assert [type(m).__name__ for m in pre] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert [type(m).__name__ for m in post] == ["Conv2d", "ReLU", "BatchNorm2d"]
    assert pre[0].bias is None and post[0].bias is not None
