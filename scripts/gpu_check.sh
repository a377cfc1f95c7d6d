#!/usr/bin/env bash
# Run ON a GPU machine (no internet), after scripts/gpu_prepare.sh here; carry .whl and .fmnist.
# At most ~580 s, each part under its own time limit. First the timings, one at a time and alone on the GPU:
#   fused  8 seeds fused (seeds_per_process=8, vmap) against the same 8 seeds as separate jobs
#   bench  the overhead benchmark (template vs plain loop, default CNN and the tiny MLP, Lightning alone; start-up)
#   race   a 2-seed race of experiment=fashion_fast_gpu (compiled; compile_s apart)
# then the checks that time nothing, side by side:
#   tests  the tests marked `gpu` (CUDA's own sync detector among them)
#   ddp    two short runs through trainer=ddp with devices=1 (NCCL), then evaluate and a 2-member ensemble
#          of their GPU checkpoints
#   startup  where the seconds before training go (each set-up stage, each package's imports, CUDA's
#          initialisation, the first step against the second); beside tests and ddp on the 16 cores
# PARTS="fused race" runs only those. Results go to $OUT (or gpu_out/): gpu.txt and one <part>.log each,
# fused_gpu.json, bench_gpu.json, race_gpu.json, startup_gpu.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
PARTS=${PARTS:-fused bench race tests ddp startup}
mkdir -p "$OUT"
if ! python3 -c "import hydra" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} RECIPELAB_DEBIAN_DIR=$PWD/.fmnist PYTHONUNBUFFERED=1
export WANDB_MODE=disabled
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import torch, lightning; print(torch.__version__, 'cuda', torch.version.cuda, lightning.__version__)"
} | tee "$OUT/gpu.txt"
# a broken import ends the check at once, before any part spends the lease
python3 -c "import recipelab.train, recipelab.bench, hydra_plugins.recipelab_sweeper" || exit 1
want() { [[ " $PARTS " == *" $1 "* ]]; }
part() {  # part NAME SECONDS COMMAND...: its output to $OUT/NAME.log, its last lines and exit status here
  local name=$1 limit=$2; shift 2
  local began=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - began)) s"
}
want fused && part fused 140 python3 -m recipelab.bench --fused 8 --epochs 2 --out "$OUT/fused_gpu.json" \
  trainer=gpu data.train_size=30000 seeds_vmap=true
want bench && part bench 190 python3 -m recipelab.bench --steps 300 --rounds 2 --out "$OUT/bench_gpu.json" \
  trainer=gpu logger=csv
want race && part race 130 python3 -m recipelab.bench --race --seeds 2 --budget 60 --out "$OUT/race_gpu.json" \
  experiment=fashion_fast_gpu logger=csv
ddp_then_entries() {
  local logs=/tmp/gpu_logs
  python3 -m recipelab.train -m trainer=ddp trainer.devices=1 trainer.max_epochs=1 seed=1,2 logger=csv \
    "paths.log_dir=$logs" || return 1
  local sweep
  sweep=$(ls -d $logs/multiruns/*/*/ | head -1)
  python3 -m recipelab.evaluate "ckpt_path=${sweep}0" device=cuda log_wandb=false || return 1
  python3 -m recipelab.ensemble "source=$sweep" device=cuda log_wandb=false
}
export -f ddp_then_entries
want tests && part tests 100 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py \
  tests/training/test_no_sync.py &
want ddp && part ddp 120 bash -c ddp_then_entries &
want startup && part startup 90 python3 -m recipelab.bench --startup --out "$OUT/startup_gpu.json" \
  trainer=gpu logger=csv &
wait
for name in $PARTS; do echo "---- $name"; tail -n 12 "$OUT/$name.log" 2>/dev/null; done
