from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms.v2 import functional as TF

from recipelab.data import build_augmentation
from recipelab.data.augment import OPS, ColorJitter, Crop, Erasing, Flip, Rotation, Scale
from recipelab.data.preview import augmentation_grid
from recipelab.data.warp import affine
from recipelab.errors import UserError
from tests.conftest import fashion_dm, standardize


def _batch(n=64):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_flip_mirrors_exactly_the_chosen_samples():
    x, g = _batch(), torch.Generator().manual_seed(1)
    out = Flip(p=0.5)(x, g)
    mirrored = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert (mirrored ^ kept).all() and 0 < mirrored.sum() < len(x)
    assert torch.equal(Flip(p=1.0)(x, g), x.flip(-1)) and torch.equal(Flip(p=0.0)(x, g), x)


def test_crop_is_a_per_sample_shift_of_the_padded_image():
    x, pad = _batch(32), 3
    out = Crop(p=1.0, padding=pad)(x, torch.Generator().manual_seed(2))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, [pad] * 4)
    offsets = []
    for o, p in zip(out, padded, strict=True):
        found = [
            (i, j)
            for i in range(2 * pad + 1)
            for j in range(2 * pad + 1)
            if torch.equal(o, p[:, i : i + 28, j : j + 28])
        ]
        assert found, "every output is a 28x28 window of its padded input"
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # offsets are drawn per sample, not once per batch
    assert torch.equal(Crop(p=0.0, padding=pad)(x, torch.Generator()), x)


def test_augmentation_touches_training_batches_only():
    aug = build_augmentation([{"op": "flip", "p": 1.0}])
    dm = fashion_dm(augmentation=aug)
    images, labels = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8), torch.arange(8)

    class _Trainer:
        training = False

    dm.trainer = _Trainer()
    x_eval, y_eval = dm.on_after_batch_transfer((images, labels), 0)
    _Trainer.training = True
    x_train, y_train = dm.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(x_eval, standardize(images)) and torch.equal(y_eval, labels)
    assert torch.allclose(x_train, standardize(images).flip(-1)) and torch.equal(y_train, labels)


def test_the_datamodule_standardizes_the_training_set(fashion_train):
    dm = fashion_dm()
    dm.setup()
    x = dm.prepare(fashion_train[0][:20000])
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02


# --- rotation, scale, color jitter, erasing; every option of conf/augmentation; the preview ---

CONF = Path(__file__).resolve().parents[2] / "conf" / "augmentation"
OPTIONS = sorted(p.stem for p in CONF.glob("*.yaml"))


def _ops(option):
    return OmegaConf.load(CONF / f"{option}.yaml").ops


def test_options_are_the_documented_set():
    singles = {"none", "flip", "crop", "rotation", "scale", "color_jitter", "erasing"}
    assert set(OPTIONS) == singles | {"standard", "standard_erasing", "strong", "flip_alternate"}
    assert {op.op for op in _ops("strong")} == set(OPS)
    assert [op.op for op in _ops("standard_erasing")] == ["flip", "crop", "erasing"]


def test_batched_affine_matches_torchvision_per_sample():
    x = _batch(4)
    angles, scales = torch.tensor([10.0, -30.0, 90.0, 0.0]), torch.tensor([1.0, 1.2, 0.8, 1.1])
    out = affine(x, angles, scales)
    for o, xi, a, s in zip(out, x, angles.tolist(), scales.tolist(), strict=True):
        ref = TF.affine(
            xi,
            angle=a,
            translate=[0, 0],
            scale=s,
            shear=[0.0, 0.0],
            interpolation=TF.InterpolationMode.BILINEAR,
        )
        assert torch.allclose(o, ref, atol=1e-4)


@pytest.mark.parametrize(
    "op", [Rotation(p=1.0, degrees=30), Scale(p=1.0, amount=0.3)], ids=["rotation", "scale"]
)
def test_geometric_ops_draw_per_sample(op):
    x = _batch(16)
    out = op(x, torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    changed = [not torch.allclose(o, xi, atol=1e-3) for o, xi in zip(out, x, strict=True)]
    assert all(changed)
    # per-sample parameters: no two outputs come from the same transform of their inputs
    diffs = {round((o - xi).abs().mean().item(), 4) for o, xi in zip(out, x, strict=True)}
    assert len(diffs) > 8
    op.p = 0.0
    assert torch.equal(op(x, torch.Generator()), x)


def test_color_jitter_is_torchvisions_brightness_and_contrast_per_sample():
    x, m = _batch(32), 0.4
    bright = ColorJitter(p=1.0, brightness=m, contrast=0.0)(x, torch.Generator().manual_seed(4))
    contrast = ColorJitter(p=1.0, brightness=0.0, contrast=m)(x, torch.Generator().manual_seed(4))
    factors = set()
    for b, c, xi in zip(bright, contrast, x, strict=True):
        # recover each sample's factor from an unclipped pixel, then compare with torchvision's kernel
        pix = (b < 0.99).flatten() & (xi.flatten() > 0.1)
        f = (b.flatten()[pix] / xi.flatten()[pix]).median().item()
        assert 1 - m - 1e-4 <= f <= 1 + m + 1e-4
        assert torch.allclose(b, TF.adjust_brightness(xi, f), atol=1e-4)
        mean = xi.mean()
        pix = ((c > 0.01) & (c < 0.99)).flatten() & ((xi.flatten() - mean).abs() > 0.2)
        k = ((c.flatten()[pix] - mean) / (xi.flatten()[pix] - mean)).median().item()
        assert torch.allclose(c, TF.adjust_contrast(xi, k), atol=1e-4)
        factors.add(round(f, 3))
    assert len(factors) > 16


def test_erasing_blacks_out_one_rectangle_per_sample():
    x = _batch(64) * 0.9 + 0.05  # no pixel is black before erasing
    out = Erasing(p=1.0, scale=(0.05, 0.2), ratio=(0.5, 2.0))(x, torch.Generator().manual_seed(5))
    boxes = set()
    for o, xi in zip(out, x, strict=True):
        erased = (o == 0)[0]
        rows, cols = erased.any(1).nonzero().flatten(), erased.any(0).nonzero().flatten()
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert erased[top:bottom, left:right].all() and erased.sum() == (bottom - top) * (right - left)
        assert 0.05 * 784 - 28 <= erased.sum() <= 0.2 * 784 + 28  # area fraction, up to rounding
        assert torch.equal(o[0][~erased], xi[0][~erased])
        boxes.add((top.item(), left.item(), bottom.item(), right.item()))
    assert len(boxes) > 32


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_changes_training_batches_only(option):
    aug = build_augmentation(_ops(option), seed=0)
    dm = fashion_dm(augmentation=aug)
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randint(1, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(64)

    class _Trainer:
        training = True

    dm.trainer = _Trainer()
    x_train, y_train = dm.on_after_batch_transfer((images, labels), 0)
    assert x_train.shape == images.shape and x_train.dtype == torch.float32 and torch.equal(y_train, labels)
    assert torch.equal(x_train, standardize(images)) == (option == "none")
    _Trainer.training = False  # validation, test, predict
    x_eval, y_eval = dm.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(x_eval, standardize(images)) and torch.equal(y_eval, labels)


def test_same_seed_same_augmentation_and_state_round_trips():
    x = _batch(32)
    a, b = build_augmentation(_ops("strong"), seed=7), build_augmentation(_ops("strong"), seed=7)
    assert torch.equal(a(x), b(x))
    state = a.state_dict()
    first = a(x)
    a.load_state_dict(state)
    assert torch.equal(a(x), first) and not torch.equal(a(x), first)


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"op": "blur"}], "unknown op 'blur'"),
        ([{"op": "flip", "p": 1.5}], r"augmentation flip p=1.5: a probability must lie in \[0, 1\]"),
        ([{"op": "rotation", "degrees": -5}], "augmentation rotation degrees=-5: must be in"),
        ([{"op": "crop", "padding": -1}], "augmentation crop padding=-1: must be >= 0"),
        ([{"op": "color_jitter", "brightness": -0.1}], "augmentation color_jitter brightness=-0.1"),
        ([{"op": "erasing", "scale": [0.3, 0.1]}], r"augmentation erasing scale=\[0.3, 0.1\]"),
        ([{"op": "scale", "factor": 2}], "augmentation.ops scale: .*unexpected keyword argument 'factor'"),
    ],
)
def test_bad_ops_are_refused(ops, message):
    with pytest.raises(UserError, match=message):
        build_augmentation(ops)


def test_preview_grid_pairs_originals_with_augmented_and_moves_no_draw():
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    aug = build_augmentation(_ops("flip"), seed=0)
    state = aug.generator.get_state()
    grid = augmentation_grid(images, aug, per_row=8)  # 5 rows of originals, each followed by its flips
    assert torch.equal(aug.generator.get_state(), state)
    assert grid.shape == (3, 10 * 29 + 1, 8 * 29 + 1)
    cell = lambda row, col: grid[0, 1 + 29 * row : 29 * (row + 1), 1 + 29 * col : 29 * (col + 1)]  # noqa: E731
    for col in range(8):
        original = images[col, 0].float() / 255
        assert torch.allclose(cell(0, col), original)
        assert torch.allclose(cell(1, col), original) or torch.allclose(cell(1, col), original.flip(-1))


def test_run_saves_the_preview_beside_its_checkpoints_and_logs_it(one_epoch_run):
    from recipelab.records.wandb_file import read_run, run_files

    png = one_epoch_run.run_dir / "augmentation.png"
    assert png.is_file() and (one_epoch_run.run_dir / "checkpoints").is_dir()
    (path,) = run_files(one_epoch_run.run_dir)
    logged = [h for h in read_run(path).history if "augmentation/samples/_type" in h]
    assert len(logged) == 1 and logged[0]["augmentation/samples/format"] == "png"
