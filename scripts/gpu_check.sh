#!/usr/bin/env bash
# Run ON a GPU machine (no internet), after scripts/gpu_prepare.sh here; carry .whl and .fmnist.
# A few minutes: the tests marked `gpu`, then the benchmark with trainer=gpu. Results go to $OUT
# (or gpu_out/): gpu_tests.log, bench_gpu.json, bench_gpu.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if ! python3 -c "import hydra" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} RECIPELAB_DEBIAN_DIR=$PWD/.fmnist PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.log"
python3 -m recipelab.bench --steps 300 --rounds 3 --full --out "$OUT/bench_gpu.json" \
  trainer=gpu logger=csv 2>&1 | tee "$OUT/bench_gpu.log"
