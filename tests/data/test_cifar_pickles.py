"""CIFAR files re-saved by Python 3 at pickle protocol 2, which writes bytes as calls of ``_codecs.encode``
(and ``b""`` as ``__builtin__.bytes()``): they load; a pickle that calls anything else is refused unrun."""

import builtins
import codecs
import os
import pickle
import subprocess
from pathlib import Path

import pytest
import torch

from recipelab.data.cifar import read_pickle
from recipelab.errors import UserError
from tests.data.test_loaders import CIFAR10, KNOWN, _cifar10, _refused


def _bytes(value):
    if isinstance(value, str):
        return value.encode("latin-1")
    return [_bytes(v) for v in value] if isinstance(value, list) else value


def _protocol2(path: Path, entry: dict) -> None:
    """As Python 3 re-saves a published file it read with ``encoding="bytes"``: bytes keys, names and
    labels, written by ``pickle.dump(..., protocol=2)``."""
    path.write_bytes(pickle.dumps({k.encode(): _bytes(v) for k, v in entry.items()}, protocol=2))


def test_a_cifar10_folder_resaved_at_protocol_2_loads(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    images, labels = _cifar10(folder, write=_protocol2)
    assert b"c_codecs\nencode\n" in (folder / "data_batch_1").read_bytes()  # the keys and the image rows
    ds = CIFAR10(root=str(tmp_path))
    assert torch.equal(ds.train_images[0], torch.from_numpy(KNOWN))
    assert torch.equal(ds.test_images, torch.from_numpy(images[10:]))
    assert ds.train_labels.tolist() == labels[:10] and ds.test_labels.tolist() == labels[10:]
    assert ds.classes[::9] == ("airplane", "truck")


def test_empty_bytes_at_protocol_2_load(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"batch_label": b"", b"labels": []}, protocol=2))
    assert b"c__builtin__\nbytes\n" in path.read_bytes()
    assert read_pickle(path) == {"batch_label": b"", "labels": []}


def _calling(fn, *args):
    return type("Payload", (), {"__reduce__": lambda self: (fn, args)})()


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda marker: _calling(os.system, f"touch {marker}"), "posix.system"),
        (lambda marker: _calling(builtins.eval, f"open({str(marker)!r}, 'w').close()"), "__builtin__.eval"),
        # protocol 2 names Python 2's modules: builtins → __builtin__, subprocess → commands
        (lambda marker: _calling(subprocess.Popen, ["touch", str(marker)]), "commands.Popen"),
    ],
    ids=["os.system", "builtins.eval", "subprocess.Popen"],
)
def test_a_protocol_2_pickle_that_calls_anything_else_is_refused_unrun(tmp_path, call, named):
    folder = tmp_path / "cifar-10-batches-py"
    _cifar10(folder, write=_protocol2)
    marker = tmp_path / "pwned"
    batch = folder / "data_batch_3"
    batch.write_bytes(pickle.dumps({b"data": call(marker), b"labels": [1]}, protocol=2))
    _refused(CIFAR10, tmp_path, "data_batch_3", "refused", named)
    assert not marker.exists()
    # the same file through the plain unpickler runs the call: the refusal above is not vacuous
    made = pickle.loads(batch.read_bytes())[b"data"]
    if isinstance(made, subprocess.Popen):
        made.wait()
    assert marker.exists()


@pytest.mark.parametrize(
    ("payload", "plain"),
    [
        (_calling(codecs.encode, "abc", "rot13"), "nop"),  # another codec: not a bytes reconstruction
        (_calling(codecs.encode, "abc", "latin1", "strict"), b"abc"),
        (_calling(codecs.encode, b"abc", "latin1"), None),  # a bytes argument: pickle writes a str
        (_calling(bytes, 5), bytes(5)),  # bytes(n): n zero bytes, as big as the file says
    ],
    ids=["rot13", "errors-argument", "bytes-argument", "bytes-of-a-size"],
)
def test_the_bytes_calls_are_refused_with_any_other_arguments(tmp_path, payload, plain):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": payload}, protocol=2))
    with pytest.raises(UserError, match="refused"):
        read_pickle(path)
    if plain is not None:  # the plain unpickler makes something of it
        assert pickle.loads(path.read_bytes())[b"data"] == plain
