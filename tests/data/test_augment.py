import torch

from recipelab.data import FashionMNISTDataModule, build_augmentation, prepare_batch
from recipelab.data.augment import Crop, Flip


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
        found = [(i, j) for i in range(2 * pad + 1) for j in range(2 * pad + 1) if torch.equal(o, p[:, i:i + 28, j:j + 28])]
        assert found, "every output is a 28x28 window of its padded input"
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # offsets are drawn per sample, not once per batch
    assert torch.equal(Crop(p=0.0, padding=pad)(x, torch.Generator()), x)


def test_unknown_op_is_refused():
    import pytest

    from recipelab.errors import UserError

    with pytest.raises(UserError, match="unknown op 'blur'"):
        build_augmentation([{"op": "blur"}])


def test_augmentation_touches_training_batches_only():
    aug = build_augmentation([{"op": "flip", "p": 1.0}])
    dm = FashionMNISTDataModule(augmentation=aug)
    images, labels = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8), torch.arange(8)

    class _Trainer:
        training = False

    dm.trainer = _Trainer()
    x_eval, y_eval = dm.on_after_batch_transfer((images, labels), 0)
    _Trainer.training = True
    x_train, y_train = dm.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(x_eval, prepare_batch(images)) and torch.equal(y_eval, labels)
    assert torch.allclose(x_train, prepare_batch(images).flip(-1)) and torch.equal(y_train, labels)


def test_prepare_batch_standardizes_the_training_set(fashion_train):
    x = prepare_batch(fashion_train[0][:20000])
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02
