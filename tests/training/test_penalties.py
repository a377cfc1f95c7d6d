"""Penalties, max-norm, dropout and DropConnect: formulas on known weights, and inside real training."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from recipelab.errors import UserError
from recipelab.models import ConvNet
from recipelab.training import RecipeModule, Regularizer


def _known_model():
    """A linear layer with weights [[1, -2], [3, 0.0005]], then batch norm; biases and BN params large."""
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.0005]]))
        model[0].bias.fill_(100.0)
        model[1].weight.fill_(50.0)
        model[1].bias.fill_(-70.0)
    return model


@pytest.mark.parametrize(("l1", "l2"), [(0.1, 0.0), (0.0, 0.1), (0.03, 0.2)])
def test_penalty_equals_its_formula_on_weights_only(l1, l2):
    w = [1.0, -2.0, 3.0, 0.0005]
    expected = l1 * sum(abs(v) for v in w) + l2 / 2 * sum(v * v for v in w)
    penalty = Regularizer(l1=l1, l2=l2).penalty(_known_model())
    assert penalty.item() == pytest.approx(expected, rel=1e-6)


def test_penalty_gradient_is_l1_sign_plus_l2_weight():
    model = _known_model()
    Regularizer(l1=0.1, l2=0.2).penalty(model).backward()
    w = model[0].weight.detach()
    assert torch.allclose(model[0].weight.grad, 0.1 * w.sign() + 0.2 * w)
    assert model[0].bias.grad is None and model[1].weight.grad is None


def test_sparsity_is_the_fraction_of_small_weights():
    assert Regularizer(sparsity_threshold=1e-3).sparsity(_known_model()).item() == pytest.approx(1 / 4)
    assert Regularizer(sparsity_threshold=1.5).sparsity(_known_model()).item() == pytest.approx(2 / 4)


def test_max_norm_caps_each_units_incoming_weights():
    linear, conv = nn.Linear(2, 2), nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, 4.0], [0.3, 0.4]]))  # row norms 5 and 0.5
        conv.weight.mul_(100)
    conv_before = conv.weight.detach().clone()
    Regularizer(max_norm=1.0).constrain(nn.Sequential(linear, conv))
    assert torch.allclose(linear.weight, torch.tensor([[0.6, 0.8], [0.3, 0.4]]))  # only the long row shrinks
    norms = conv.weight.flatten(1).norm(dim=1)  # one output channel = one unit
    assert torch.allclose(norms, torch.ones(3), atol=1e-5)
    direction = conv_before.flatten(1) / conv_before.flatten(1).norm(dim=1, keepdim=True)
    assert torch.allclose(conv.weight.flatten(1), direction, atol=1e-5)  # rescaled, not rotated


def _fit(regularizer, steps=30, lr=0.5, callbacks=()):
    """A small MLP trained by the real RecipeModule on a fixed random problem; returns the module."""
    torch.manual_seed(0)
    x = torch.randn(256, 20)
    y = (x[:, :5].sum(1) > 0).long()
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
    module = RecipeModule(model, lambda p: torch.optim.SGD(p, lr=lr), regularizer=regularizer, num_classes=2)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True))
    return module, trainer


def test_l1_training_raises_sparsity_and_logs_penalty_and_sparsity():
    plain, _ = _fit(Regularizer())
    l1, trainer = _fit(Regularizer(l1=1e-2, sparsity_threshold=1e-2))
    sparsity = Regularizer(sparsity_threshold=1e-2).sparsity
    assert sparsity(l1.model) > sparsity(plain.model) + 0.3
    logged = trainer.callback_metrics
    assert logged["train/sparsity"].item() == pytest.approx(sparsity(l1.model).item())
    assert (
        logged["train/penalty_epoch"] > 0
        and "train/penalty_epoch" not in _fit(Regularizer(), 8)[1].callback_metrics
    )


class _PenaltyWatch(L.Callback):
    """l1·Σ|w| + l2/2·Σw² of the model's weights (ndim > 1) as each training batch starts, summed here."""

    def __init__(self, l1, l2):
        self.l1, self.l2, self.values = l1, l2, []

    def on_train_batch_start(self, trainer, module, *args):
        ws = [w.detach().double() for w in module.model.parameters() if w.ndim > 1]
        self.values.append(sum(self.l1 * w.abs().sum() + self.l2 / 2 * (w * w).sum() for w in ws).item())


def test_penalty_is_logged_per_step_and_per_epoch_with_the_values_of_the_weights():
    """train/penalty_step is the last step's penalty, train/penalty_epoch the mean over the last epoch's
    steps (30 steps of 8 batches of 32: the last epoch holds steps 24-29), each from the weights then."""
    watch = _PenaltyWatch(l1=1e-3, l2=1e-2)
    _, trainer = _fit(Regularizer(l1=1e-3, l2=1e-2), callbacks=[watch])
    logged = trainer.callback_metrics
    assert len(watch.values) == 30
    assert logged["train/penalty_step"].item() == pytest.approx(watch.values[-1], rel=1e-5)
    assert logged["train/penalty_epoch"].item() == pytest.approx(sum(watch.values[24:]) / 6, rel=1e-5)


class _NormWatch(L.Callback):
    """Records the largest incoming-weight norm of any unit after every optimizer step."""

    def __init__(self):
        self.largest = []

    def on_train_batch_end(self, trainer, module, *args):
        self.largest.append(
            max(w.flatten(1).norm(dim=1).max().item() for w in module.model.parameters() if w.ndim > 1)
        )


def test_max_norm_holds_after_every_optimizer_step():
    free, capped = _NormWatch(), _NormWatch()
    _fit(Regularizer(), lr=2.0, callbacks=[free])
    _fit(Regularizer(max_norm=1.2), lr=2.0, callbacks=[capped])
    assert max(free.largest) > 1.5  # without the constraint the weights grow past the cap
    assert len(capped.largest) == 30 and max(capped.largest) <= 1.2 + 1e-5


def _outputs(model, train):
    model.train(train)
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return model(x), model(x)


@pytest.mark.parametrize("knob", ["dropout", "dropconnect"])
def test_dropout_and_dropconnect_act_in_training_only(knob):
    torch.manual_seed(0)
    model = ConvNet(widths=(8, 16), depth=1, **{knob: 0.5})
    a, b = _outputs(model, train=True)
    assert not torch.allclose(a, b)
    a, b = _outputs(model, train=False)
    plain = ConvNet(widths=(8, 16), depth=1)  # the same weights (and running statistics), no dropping
    state = model.state_dict()
    plain.load_state_dict(
        {k.replace("parametrizations.weight.original", "weight"): v for k, v in state.items()}
    )
    assert torch.equal(a, b) and torch.allclose(a, _outputs(plain, train=False)[0], atol=1e-6)


def test_dropconnect_drops_single_weights_and_rescales_the_rest():
    model = ConvNet(widths=(8, 16), depth=1, dropconnect=0.5)
    original = model.head.parametrizations.weight.original
    model.train()
    w = model.head.weight
    kept = w != 0
    assert 0.3 < kept.float().mean() < 0.7 and kept.any(1).all()  # individual weights, not whole units
    assert torch.allclose(w[kept], 2 * original[kept])
    model.eval()
    assert torch.equal(model.head.weight, original)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"l1": -1e-5}, "regularization.l1=-1e-05: must be >= 0"),
        ({"l2": -0.1}, "regularization.l2=-0.1"),
        ({"max_norm": 0.0}, "regularization.max_norm=0.0"),
        ({"dropout": 1.0}, r"regularization.dropout=1.0: must be a probability in \[0, 1\)"),
        ({"dropconnect": -0.1}, "regularization.dropconnect=-0.1"),
        ({"label_smoothing": 1.5}, "regularization.label_smoothing=1.5"),
    ],
)
def test_bad_values_are_refused(bad, message):
    with pytest.raises(UserError, match=message):
        Regularizer(**bad)


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("regularization.dropout=1.0", "error: regularization.dropout=1.0: must be a probability in [0, 1)"),
        ("augmentation.ops=[{op:blur}]", "error: augmentation.ops: unknown op 'blur'"),
    ],
)
def test_bad_value_stops_the_command_before_training(tmp_path, override, line):
    from tests.conftest import train_cli

    run = train_cli(tmp_path, override, "logger=csv")
    assert run.proc.returncode == 2 and run.proc.stderr.strip().splitlines()[-1].startswith(line)
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.json"))
