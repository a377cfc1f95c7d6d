"""The default recipe is what the README's "The default recipe" says, read from the composed config and
the parts built from it (not from the YAML text)."""

from torch import nn

from recipelab.build import build_model, build_param_groups
from tests.training.composed import compose_train


def test_the_default_recipe_is_the_readmes():
    cfg = compose_train()
    model = build_model(cfg)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 6 and len(norms) == 6
    assert 70_000 < sum(p.numel() for p in model.parameters()) < 75_000  # "a 73k-parameter 6-conv CNN"
    assert cfg.normalization.position == "pre"  # batch norm before each ReLU
    optimizer = cfg.optimizer
    assert optimizer.nesterov and optimizer.momentum > 0 and optimizer.lr == 0.1
    groups = build_param_groups(cfg, cfg.data.batch_size)(model)
    for group in groups:  # weight decay 5e-4 on the weights only (no decay on biases and norm parameters)
        decays = group.get("weight_decay", optimizer.weight_decay) > 0
        assert all((p.ndim > 1) == decays for p in group["params"])
    assert optimizer.weight_decay == 5e-4
    assert cfg.scheduler.build._target_.endswith("one_cycle") and cfg.scheduler.interval == "step"
    assert cfg.data.batch_size == 256 and cfg.trainer.max_epochs == 16
    assert [op.op for op in cfg.augmentation.ops] == ["flip"]
    assert cfg.regularization.label_smoothing == 0.1 and cfg.tta_flip
    assert cfg.trainer.precision == "bf16-mixed" and cfg.channels_last
    assert compose_train("trainer=cpu").trainer.precision == "32-true"  # `trainer=cpu`: fp32
