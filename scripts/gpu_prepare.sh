#!/usr/bin/env bash
# Run HERE (with internet to PyPI) before a GPU check: gathers what the offline GPU machine lacks into
# folders that travel with the working tree (both ignored by git):
#   .whl/    hydra-core, omegaconf and antlr4 as wheels for its Python 3.12 (it has torch, lightning,
#            torchvision, torchmetrics, pytest; runs there use logger=csv, so wandb is not needed)
#   .fmnist/ the Fashion-MNIST IDX files (the GPU machine has no Debian package and no internet)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .whl .fmnist
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl hydra-core==1.3.8 omegaconf==2.3.1
"$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # sdist only on PyPI; pure Python
cp /usr/share/datasets/fashion-mnist/*.gz .fmnist/
ls -la .whl .fmnist
