#!/usr/bin/env bash
# Run ON a GPU machine (no internet), after scripts/gpu_prepare.sh here; carry .whl and .fmnist.
# About 7 minutes: the tests marked `gpu` (CUDA's own sync detector among them), a 3-seed race of
# experiment=fashion_fast, then the overhead benchmark, each with trainer=gpu and under its own time limit.
# Results go to $OUT (or gpu_out/): gpu.txt, gpu_tests.log, race_gpu.log, race_gpu.json, bench_gpu.json, bench_gpu.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if ! python3 -c "import hydra" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} RECIPELAB_DEBIAN_DIR=$PWD/.fmnist PYTHONUNBUFFERED=1
export WANDB_MODE=disabled
{ nvidia-smi --query-gpu=name,memory.total --format=csv; nproc; python3 -c "import torch, lightning; print(torch.__version__, lightning.__version__)"; } | tee "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/training/test_no_sync.py 2>&1 | tee "$OUT/gpu_tests.log"
timeout 240 python3 -m recipelab.bench --race --seeds 3 --budget 180 --out "$OUT/race_gpu.json" \
  experiment=fashion_fast trainer=gpu logger=csv 2>&1 | tail -40 | tee "$OUT/race_gpu.log"
timeout 150 python3 -m recipelab.bench --steps 300 --rounds 3 --out "$OUT/bench_gpu.json" \
  trainer=gpu logger=csv 2>&1 | tail -40 | tee "$OUT/bench_gpu.log"
