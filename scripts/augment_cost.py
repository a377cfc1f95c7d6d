"""What augmentation costs next to a training step: prepare_batch (uint8 → float, augment, standardize)
on a 256-image batch, per option and per op of `strong`, against a bf16 training step of the default CNN.

python scripts/augment_cost.py [threads] [repeats]
Minimum times, measured interleaved: on a shared machine the least disturbed run is the best estimate.
"""

import sys
import time

import torch
from omegaconf import OmegaConf

from recipelab.data import build_augmentation, prepare_batch
from recipelab.data.fashion_mnist import MEAN, STD, load
from recipelab.models import ConvNet

threads, repeats = (int(a) for a in (sys.argv[1:] + ["2", "30"])[:2])
torch.set_num_threads(threads)
images = load().train_images[:256]
stats = (torch.tensor(MEAN).view(1, 1, 1, 1), torch.tensor(STD).view(1, 1, 1, 1))
labels = torch.randint(0, 10, (256,))
model = ConvNet().to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
x0 = prepare_batch(images, *stats)


def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x0.contiguous(memory_format=torch.channels_last))
        loss = torch.nn.functional.cross_entropy(out, labels)
    loss.backward()
    opt.step()
    opt.zero_grad()


def augmenting(ops):
    aug = build_augmentation(ops, seed=0)
    return lambda: prepare_batch(images, *stats, aug)


cases = {"step": step}
for name in ("none", "standard", "strong"):
    cases[name] = augmenting(OmegaConf.load(f"conf/augmentation/{name}.yaml").ops)
for op in OmegaConf.load("conf/augmentation/strong.yaml").ops:
    cases[op.op] = augmenting([op])
times = {k: float("inf") for k in cases}
for _ in range(repeats):
    for k, f in cases.items():
        t = time.perf_counter()
        f()
        times[k] = min(times[k], time.perf_counter() - t)
print(f"threads={threads} training step {times['step'] * 1e3:.1f} ms")
for k, v in times.items():
    if k != "step":
        share = 100 * v / times["step"]
        print(f"prepare_batch {k:13s} {v * 1e3:6.2f} ms {256 / v:9.0f} img/s {share:5.1f}% of a step")
