"""Every optimizer option, composed from conf/, against its update rule written out here."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from recipelab.build import build_param_groups
from recipelab.data import TensorBatchLoader
from recipelab.errors import UserError
from recipelab.records.folder import CONF_DIR
from recipelab.run.validate import preflight
from recipelab.training import RecipeModule
from recipelab.training.optim import scaled_lr
from tests.conftest import train_cli
from tests.training.composed import compose_train

# float64 on both sides: any difference is the rule's, not rounding
F64 = torch.float64
X = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
Y = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
STEPS = 5


def loss_fn(w, b):
    return ((X @ w.T + b - Y) ** 2).mean()


def grads(w, b, wd):
    """∇ of the loss plus the L2 term (wd/2)|w|² on the weight only: biases sit in the no-decay group."""
    gw, gb = torch.func.grad(loss_fn, argnums=(0, 1))(w, b)
    return gw + wd * w, gb


def composed_run(option: str, *overrides: str):
    """STEPS steps of the composed optimizer (param groups as training builds them) on nn.Linear(3, 2)."""
    cfg = compose_train(f"optimizer={option}", *overrides)
    model = nn.Linear(3, 2, dtype=F64)
    torch.manual_seed(0)
    nn.init.normal_(model.weight), nn.init.normal_(model.bias)
    start = (model.weight.detach().clone(), model.bias.detach().clone())
    opt = instantiate(cfg.optimizer)(build_param_groups(cfg)(model))
    for _ in range(STEPS):
        opt.zero_grad()
        loss_fn(model.weight, model.bias).backward()
        opt.step()
    return cfg.optimizer, start, (model.weight.detach(), model.bias.detach())


def sgd(o, w, b):
    for _ in range(STEPS):
        gw, gb = grads(w, b, o.weight_decay)
        w, b = w - o.lr * gw, b - o.lr * gb
    return w, b


def momentum(o, w, b):  # v ← μv − η∇E, w ← w + v
    vw, vb = torch.zeros_like(w), torch.zeros_like(b)
    for _ in range(STEPS):
        gw, gb = grads(w, b, o.weight_decay)
        vw, vb = o.momentum * vw - o.lr * gw, o.momentum * vb - o.lr * gb
        w, b = w + vw, b + vb
    return w, b


def nesterov(o, w, b):
    """NAG (Sutskever et al. 2013): the gradient at the look-ahead point w + μv. torch keeps the
    look-ahead point itself as the parameter, so the comparison is with w + μv."""
    vw, vb = torch.zeros_like(w), torch.zeros_like(b)
    for _ in range(STEPS):
        gw, gb = grads(w + o.momentum * vw, b + o.momentum * vb, o.weight_decay)
        vw, vb = o.momentum * vw - o.lr * gw, o.momentum * vb - o.lr * gb
        w, b = w + vw, b + vb
    return w + o.momentum * vw, b + o.momentum * vb


def adagrad(o, w, b):  # accumulated squares: s ← s + g², w ← w − η g / (√s + ε)
    sw, sb = torch.zeros_like(w), torch.zeros_like(b)
    for _ in range(STEPS):
        gw, gb = grads(w, b, o.weight_decay)
        sw, sb = sw + gw**2, sb + gb**2
        w, b = w - o.lr * gw / (sw.sqrt() + o.eps), b - o.lr * gb / (sb.sqrt() + o.eps)
    return w, b


def rmsprop(o, w, b):  # moving average: s ← αs + (1 − α)g², w ← w − η g / (√s + ε)
    sw, sb = torch.zeros_like(w), torch.zeros_like(b)
    for _ in range(STEPS):
        gw, gb = grads(w, b, o.weight_decay)
        sw, sb = o.alpha * sw + (1 - o.alpha) * gw**2, o.alpha * sb + (1 - o.alpha) * gb**2
        w, b = w - o.lr * gw / (sw.sqrt() + o.eps), b - o.lr * gb / (sb.sqrt() + o.eps)
    return w, b


def adam(o, w, b, decoupled=False):
    """Bias-corrected moments m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ); w ← w − η m̂/(√v̂ + ε). AdamW first shrinks
    the weight by ηλ (decoupled) instead of adding λw to the gradient."""
    (b1, b2), params = o.betas, [w, b]
    m, v = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    for t in range(1, STEPS + 1):
        g = grads(*params, 0.0 if decoupled else o.weight_decay)
        if decoupled:
            params[0] = params[0] * (1 - o.lr * o.weight_decay)
        for i in range(2):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            params[i] = params[i] - o.lr * m_hat / (v_hat.sqrt() + o.eps)
    return tuple(params)


def adamw(o, w, b):
    return adam(o, w, b, decoupled=True)


@pytest.mark.parametrize(
    ("option", "rule"),
    [
        ("sgd", sgd),
        ("momentum", momentum),
        ("nesterov", nesterov),
        ("adagrad", adagrad),
        ("rmsprop", rmsprop),
        ("adam", adam),
        ("adamw", adamw),
    ],
)
def test_optimizer_option_follows_its_update_rule(option, rule):
    # a weight decay and lr large enough that every term of the rule shows in the result
    options, start, got = composed_run(option, "optimizer.weight_decay=0.1", "optimizer.lr=0.05")
    want = rule(options, *start)
    for g, w, s in zip(got, want, start, strict=True):
        assert not torch.allclose(g, s)  # it moved
        torch.testing.assert_close(g, w, atol=1e-6, rtol=0)


def test_lbfgs_through_lightning_matches_torch_lbfgs_full_batch():
    """Lightning's automatic optimization hands LBFGS a closure that re-evaluates the loss; full batch, it
    must reproduce torch's own LBFGS loop step for step."""
    cfg = compose_train("optimizer=lbfgs")
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    y = (x @ torch.randn(4, 3, generator=torch.Generator().manual_seed(3), dtype=F64)).argmax(1)
    torch.manual_seed(0)
    model, reference = nn.Linear(4, 3, dtype=F64), nn.Linear(4, 3, dtype=F64)
    reference.load_state_dict(model.state_dict())
    module = RecipeModule(
        model=model, optimizer=instantiate(cfg.optimizer), param_groups=build_param_groups(cfg), num_classes=3
    )
    trainer = L.Trainer(
        max_epochs=3,
        precision="64-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=TensorBatchLoader(x, y, batch_size=len(y)))
    assert trainer.global_step == 3

    options = {k: v for k, v in cfg.optimizer.items() if not k.startswith("_")}
    opt = torch.optim.LBFGS(reference.parameters(), **options)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(reference(x), y)
        loss.backward()
        return loss

    start_loss = closure().item()
    for _ in range(3):
        opt.step(closure)
    assert closure().item() < 0.5 * start_loss
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_param_group_rules_land_on_the_right_parameters():
    rules = "[{match: head, lr_scale: 10}, {match: features.0, lr_scale: 0.5, weight_decay_scale: 0}]"
    cfg = compose_train(f"param_groups.rules={rules}")
    model = instantiate(cfg.model)
    groups = build_param_groups(cfg)(model)
    lr, wd = cfg.optimizer.lr, cfg.optimizer.weight_decay
    where = {id(p): g for g in groups for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(where) == len(list(model.parameters()))
    for name, p in model.named_parameters():
        g = where[id(p)]
        scale, wd_scale = (
            (10, 1) if name.startswith("head.") else (0.5, 0) if name.startswith("features.0.") else (1, 1)
        )
        assert g["lr"] == pytest.approx(lr * scale), name
        assert g["weight_decay"] == pytest.approx(0.0 if p.ndim <= 1 else wd * wd_scale), name


def test_lr_scaling_rule_scales_every_group():
    cfg = compose_train(
        "param_groups.lr_scaling=sqrt",
        "trainer.accumulate_grad_batches=2",
        "param_groups.rules=[{match: head, lr_scale: 10}]",
    )
    groups = build_param_groups(cfg, batch_size=32)(instantiate(cfg.model))
    base = cfg.optimizer.lr * (32 * 2 / 256) ** 0.5
    assert sorted({round(g["lr"], 12) for g in groups}) == [round(base, 12), round(10 * base, 12)]
    assert scaled_lr(0.1, 512, "linear") == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.lr=0"], "optimizer.lr=0: must be > 0"),
        (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be > 0"),
        (["optimizer.momentum=1.0"], "optimizer.momentum=1.0: must be in [0, 1)"),
        (["optimizer=adam", "optimizer.betas=[0.9,1.5]"], "optimizer.betas.1=1.5: must be in [0, 1)"),
        (["data.batch_size=0"], "data.batch_size=0: must be an integer >= 1 or 'full'"),
    ],
)
def test_bad_values_name_the_key_and_range(overrides, message, tmp_path):
    with pytest.raises(UserError) as err:
        preflight(["train", f"paths.log_dir={tmp_path}", *overrides], CONF_DIR)
    assert str(err.value) == message


def test_unknown_name_in_rule_is_a_user_error():
    cfg = compose_train("param_groups.rules=[{match: classifier, lr_scale: 10}]")
    with pytest.raises(UserError, match=r"param_groups.rules\[0\].match='classifier' matches no parameter"):
        build_param_groups(cfg)(instantiate(cfg.model))


def test_bad_value_stops_the_command_line_before_training(tmp_path):
    run = train_cli(tmp_path, "data.batch_size=0", "logger=csv")
    assert run.proc.returncode == 2
    last = run.proc.stderr.strip().splitlines()[-1]
    assert last == "error: data.batch_size=0: must be an integer >= 1 or 'full'"
    assert not list(tmp_path.rglob("metrics.json"))  # stopped before the Trainer existed
