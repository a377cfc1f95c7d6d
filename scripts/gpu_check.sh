#!/usr/bin/env bash
# Run ON a GPU machine (no internet), after scripts/gpu_prepare.sh here; carry .whl and .fmnist.
# At most 590 s, each part under its own time limit: the tests marked `gpu` (CUDA's own sync detector
# among them), a 2-seed race of experiment=fashion_fast_gpu (compiled; compile_s apart), two short runs
# through trainer=ddp with devices=1 (NCCL), evaluate and a 2-member ensemble of their GPU checkpoints,
# the overhead benchmark (template vs plain loop at batch 256 with the default CNN), then 8 seeds fused
# (seeds_per_process=8, vmap) against the same 8 seeds as separate jobs: their training images/s.
# Results go to $OUT (or gpu_out/): gpu.txt, gpu_tests.log, race_gpu.{log,json}, ddp.log, evaluate.log,
# ensemble.log, bench_gpu.{log,json}, fused_gpu.{log,json}.
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
timeout 110 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/training/test_no_sync.py 2>&1 | tee "$OUT/gpu_tests.log"
timeout 120 python3 -m recipelab.bench --race --seeds 2 --budget 60 --out "$OUT/race_gpu.json" \
  experiment=fashion_fast_gpu logger=csv 2>&1 | tail -40 | tee "$OUT/race_gpu.log"
LOGS=/tmp/gpu_logs
timeout 80 python3 -m recipelab.train -m trainer=ddp trainer.devices=1 trainer.max_epochs=1 seed=1,2 \
  logger=csv "paths.log_dir=$LOGS" 2>&1 | tail -15 | tee "$OUT/ddp.log"
SWEEP=$(ls -d $LOGS/multiruns/*/*/ | head -1)
timeout 40 python3 -m recipelab.evaluate "ckpt_path=${SWEEP}0" device=cuda log_wandb=false 2>&1 | tail -8 | tee "$OUT/evaluate.log"
timeout 40 python3 -m recipelab.ensemble "source=$SWEEP" device=cuda log_wandb=false 2>&1 | tail -8 | tee "$OUT/ensemble.log"
timeout 90 python3 -m recipelab.bench --steps 300 --rounds 3 --out "$OUT/bench_gpu.json" \
  trainer=gpu logger=csv 2>&1 | tail -40 | tee "$OUT/bench_gpu.log"
timeout 110 python3 -m recipelab.bench --fused 8 --epochs 1 --out "$OUT/fused_gpu.json" \
  trainer=gpu data.train_size=20000 seeds_vmap=true 2>&1 | tail -30 | tee "$OUT/fused_gpu.log"
