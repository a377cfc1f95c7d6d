"""airbench's speed tricks, each against an independent computation (issue 17)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recipelab.build import build_datamodule, build_model, build_module
from recipelab.data.augment import alternate_half, build_augmentation
from recipelab.data.memory import TensorBatchLoader
from recipelab.errors import UserError
from recipelab.models import ConvNet, NormSpec
from recipelab.models.whiten import Whitening, dirac_init
from recipelab.training import RecipeModule, param_groups_weight_decay, predict_proba
from recipelab.training.averaging import EMA
from tests.conftest import standardize
from tests.training.composed import bare_trainer, compose_train


def _smooth_images(n=200, size=12, seed=0):
    """Images with correlated neighbouring pixels (a blurred noise field), so whitening has work to do."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size + 2, size + 2, generator=g)
    return F.avg_pool2d(x, 3, stride=1) * 3 + 0.5


@pytest.mark.parametrize("kernel", [2, 3])
def test_whitening_makes_the_patch_covariance_of_its_outputs_the_identity(kernel):
    images = _smooth_images()
    layer = Whitening(1, kernel, eps=1e-9)
    layer.fit(images)
    out = layer(images.double().float())[:, : kernel * kernel]  # the + filters; the rest are their negatives
    before = (kernel - 1) // 2
    inner = out[
        :, :, before : before + images.shape[2] - kernel + 1, before : before + images.shape[3] - kernel + 1
    ]
    flat = inner.permute(1, 0, 2, 3).reshape(kernel * kernel, -1).double()
    torch.testing.assert_close(
        torch.cov(flat), torch.eye(kernel * kernel, dtype=torch.double), atol=2e-3, rtol=0
    )
    assert torch.equal(layer.weight[kernel * kernel :], -layer.weight[: kernel * kernel])
    assert bool(layer.fitted) and not layer.weight.requires_grad


def test_a_fitted_whitening_layer_is_kept_when_training_starts_again():
    cfg = compose_train("whiten.kernel=2", "data.train_size=200", "data.val_size=100")
    model = build_model(cfg)
    assert model.whiten.out_channels == 8 and model.features[0][0][0].in_channels == 8
    assert [n for n, p in model.named_parameters() if p.requires_grad][-1] == "head.bias"  # names kept
    model.whiten.fit(_smooth_images(20, 28))
    weight = model.whiten.weight.clone()
    rebuilt = build_model(cfg)
    rebuilt.load_state_dict(model.state_dict())
    module = RecipeModule(rebuilt, optimizer=torch.optim.SGD)
    module.on_fit_start()  # fitted: never refitted (a resumed run keeps its own layer)
    assert torch.equal(rebuilt.whiten.weight, weight)


class _AsFitted(L.Callback):
    """The whitening filters as training starts (fitted by then), and the training images."""

    def on_train_start(self, trainer, module):
        self.weight = module.model.whiten.weight.detach().clone()
        self.images = trainer.datamodule.splits["train"][0]


@pytest.mark.parametrize("frozen", [True, False])
def test_whiten_frozen_and_eps_from_the_config(frozen):
    cfg = compose_train(
        "whiten.kernel=2", f"whiten.frozen={str(frozen).lower()}", "whiten.eps=0.3", "model.widths=[2]",
        "model.depth=1", "data.train_size=40", "data.val_size=100", "data.batch_size=20",
    )  # fmt: skip
    datamodule, seen = build_datamodule(cfg), _AsFitted()
    module = build_module(cfg, datamodule.batch_size)
    bare_trainer(max_epochs=1, limit_val_batches=0, callbacks=[seen]).fit(module, datamodule=datamodule)
    # the + filters W (rows) fitted with eps satisfy WᵀW = (C + eps·I)⁻¹, C the 2×2 patches' covariance
    x = standardize(seen.images)[:, 0].double()
    h, w = x.shape[1] - 1, x.shape[2] - 1
    patches = torch.stack([x[:, i : i + h, j : j + w] for i in (0, 1) for j in (0, 1)], -1).reshape(-1, 4)
    filters = seen.weight[:4].flatten(1).double()
    expected = torch.linalg.inv(torch.cov(patches.T) + 0.3 * torch.eye(4, dtype=torch.double))
    torch.testing.assert_close(filters.T @ filters, expected, rtol=1e-4, atol=1e-6)
    layer = module.model.whiten
    assert layer.eps == 0.3 and layer.weight.requires_grad is not frozen
    assert torch.equal(layer.weight, seen.weight) is frozen  # trained on from the fitted filters, or kept


def test_dirac_init_passes_the_input_through_the_first_filters():
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    dirac_init(conv)
    x = torch.randn(2, 3, 8, 8)
    out = F.conv2d(x, conv.weight, padding=1)
    torch.testing.assert_close(out[:, :3], x)
    assert conv.weight[3:].abs().sum() > 0  # the other filters keep their random init


@pytest.mark.parametrize("seed", [0, 5])
def test_alternating_flip_mirrors_exactly_the_complementary_half(seed):
    aug = build_augmentation([{"op": "flip", "alternate": True}], seed=seed)
    x = torch.rand(1000, 1, 4, 4)
    index = torch.arange(1000)
    flipped = [(aug(x.clone(), index=index, epoch=e) != x).flatten(1).any(1) for e in range(3)]
    assert torch.equal(flipped[0], ~flipped[1]) and torch.equal(flipped[0], flipped[2])
    assert 400 < int(flipped[0].sum()) < 600  # about half, and a different half for another seed
    other = alternate_half(index, seed + 1)
    assert not torch.equal(other, alternate_half(index, seed))
    with pytest.raises(UserError, match="p=0.3 must be 0.5"):
        build_augmentation([{"op": "flip", "alternate": True, "p": 0.3}])


def test_multi_view_tta_is_the_mean_of_the_views_probabilities():
    torch.manual_seed(0)
    model = ConvNet((4, 8), 1).eval()
    x = torch.randn(3, 1, 10, 10)

    def moved(v, dy, dx):  # pixel (i, j) comes from (i - dy, j - dx), the border repeated
        rows = (torch.arange(10) - dy).clamp(0, 9)
        cols = (torch.arange(10) - dx).clamp(0, 9)
        return v[:, :, rows][:, :, :, cols]

    views = [
        moved(v, dy, dx) for v in (x, x.flip(-1)) for dy, dx in ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))
    ]
    expected = torch.stack([model(v).softmax(-1) for v in views]).mean(0)
    with torch.no_grad():
        torch.testing.assert_close(predict_proba(model, x, tta_flip=True, tta_shift=1), expected)
        plain = predict_proba(model, x)
    torch.testing.assert_close(plain, model(x).softmax(-1).detach())


@pytest.mark.parametrize("lr", [0.1, 0.4])
def test_decoupled_weight_decay_shrinks_by_the_same_factor_at_any_lr(lr):
    layer = nn.Linear(4, 3)
    w = layer.weight.detach().clone()
    groups = param_groups_weight_decay(layer, lr=lr, weight_decay=0.01, decoupled_weight_decay=True)
    opt = torch.optim.SGD(groups, lr=lr)
    layer.weight.grad, layer.bias.grad = torch.zeros_like(w), torch.zeros(3)
    opt.step()
    torch.testing.assert_close(layer.weight.detach(), w * (1 - 0.01))  # 1 - weight_decay, whatever the lr


def test_frozen_norm_scale_and_bias_lr_scale():
    norm = NormSpec(freeze_scale=True, bias_lr_scale=64)
    model = ConvNet((4, 8), 1, norm=norm)
    groups = param_groups_weight_decay(model, lr=0.1, weight_decay=5e-4)
    in_groups = {id(p) for g in groups for p in g["params"]}
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(id(m.weight) not in in_groups and not m.weight.requires_grad for m in bns)
    (bias_group,) = [g for g in groups if any(p is bns[0].bias for p in g["params"])]
    assert bias_group["lr"] == pytest.approx(0.1 * 64) and bias_group["weight_decay"] == 0
    assert {id(m.bias) for m in bns} == {id(p) for p in bias_group["params"]}
    with pytest.raises(UserError, match="bias_lr_scale"):
        NormSpec(bias_lr_scale=-1)


class _Weights(L.Callback):
    def __init__(self):
        self.after_step: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_step.append(pl_module.model.head.weight.detach().clone())


def test_ema_every_k_steps_equals_the_formula():
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 6, 6), torch.randint(0, 10, (64,))
    module = RecipeModule(ConvNet((4,), 1), optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    weights = _Weights()
    decay, k = 0.8, 3
    ema = EMA(decay=decay, update_every_n_steps=k, update_starting_at_step=0)
    trainer = L.Trainer(
        max_steps=8,
        callbacks=[weights, ema],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=TensorBatchLoader(x, y, batch_size=8))
    expected = None
    for step, w in enumerate(weights.after_step):  # updates after steps 0, k, 2k, ... (zero-based)
        if step % k == 0:
            expected = w if expected is None else decay * expected + (1 - decay) * w
    torch.testing.assert_close(module.model.head.weight.detach(), expected)  # swapped in at fit end


def test_ema_starts_at_start_epoch_from_a_copy_of_the_weights():
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 6, 6), torch.randint(0, 10, (64,))
    module = RecipeModule(ConvNet((4,), 1), optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    weights, decay = _Weights(), 0.9
    trainer = L.Trainer(
        max_epochs=3,
        callbacks=[weights, EMA(decay=decay, start_epoch=1)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=TensorBatchLoader(x, y, batch_size=8))  # 8 steps an epoch
    assert len(weights.after_step) == 24
    expected = weights.after_step[8]  # epoch 1's first step: a copy; epoch 0 left out
    for w in weights.after_step[9:]:
        expected = decay * expected + (1 - decay) * w
    torch.testing.assert_close(module.model.head.weight.detach(), expected)


def test_the_ema_checkpoint_is_tested_on_its_averaged_weights(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 6, 6), torch.randint(0, 10, (64,))
    module = RecipeModule(ConvNet((4,), 1), optimizer=lambda p: torch.optim.SGD(p, lr=0.5))
    ema = EMA(decay=0.5, update_every_n_steps=1, update_starting_at_step=0)
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[ema],
        logger=False,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = TensorBatchLoader(x, y, batch_size=8)
    trainer.fit(module, train_dataloaders=loader)
    (path,) = tmp_path.rglob("*.ckpt")
    saved = torch.load(path, weights_only=True)
    averaged, current = (
        saved["state_dict"]["model.head.weight"],
        saved["current_model_state"]["model.head.weight"],
    )
    assert not torch.equal(averaged, current)
    module.model.head.weight.data.zero_()
    trainer.test(module, dataloaders=loader, ckpt_path=str(path), verbose=False)
    torch.testing.assert_close(module.model.head.weight.detach(), averaged)
