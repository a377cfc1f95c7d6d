#!/usr/bin/env bash
# Claim 8 in one command (conf/experiment/ensemble_budget.yaml): single model vs 5-seed ensemble vs snapshot
# ensemble vs SWA vs EMA at equal total training epochs.
#   bash scripts/ensemble_budget.sh [overrides for both training sweeps]     (make ablate-ensemble-budget)
#   EPOCHS=20 MEMBERS=5: each arm's epochs, and the members of the seed ensemble (EPOCHS / MEMBERS each)
#   SEEDS=1,2,3,4,5: the one-run arms' seeds (the seed ensemble's members are seeds 1..MEMBERS)
#   OUT: the folder of the two sweeps (default logs/multiruns/<date>/<time>_ensemble_budget/{arms,members})
set -euo pipefail
shopt -s nullglob
PY=${PY:-.venv/bin/python}
EPOCHS=${EPOCHS:-20}
MEMBERS=${MEMBERS:-5}
SEEDS=${SEEDS:-1,2,3,4,5}
if ! [[ $EPOCHS =~ ^[0-9]+$ && $MEMBERS =~ ^[0-9]+$ ]] || ((MEMBERS < 2 || EPOCHS % MEMBERS)); then
	echo "error: EPOCHS=$EPOCHS must be a multiple of MEMBERS=$MEMBERS (an integer >= 2)" >&2
	exit 2
fi
OUT=${OUT:-logs/multiruns/$(date +%Y-%m-%d)/$(date +%H-%M-%S)_ensemble_budget}
BUDGET=("ensemble_budget.epochs=$EPOCHS" "ensemble_budget.member_epochs=$((EPOCHS / MEMBERS))")

# 1. the one-run arms (single, snapshot, swa, ema) x seeds; 2. the seed ensemble's members
$PY -m recipelab.train -m experiment=ensemble_budget "${BUDGET[@]}" "seed=$SEEDS" "hydra.sweep.dir=$OUT/arms" "$@"
$PY -m recipelab.train -m experiment=ensemble_budget arm=member "seed=$(seq -s, 1 "$MEMBERS")" \
	name=ensemble_budget_members "${BUDGET[@]}" "hydra.sweep.dir=$OUT/members" "$@"

# 3. the ensembles and the single models, each before and after temperature scaling
$PY -m recipelab.ensemble "source=$OUT/members"
for job in "$OUT"/arms/*/; do
	if [[ -d $job/checkpoints/members ]]; then
		$PY -m recipelab.ensemble "source=$job" || echo "ensemble_budget: no ensemble of $job" >&2
	else
		$PY -m recipelab.evaluate "ckpt_path=$job" || echo "ensemble_budget: $job not evaluated" >&2
	fi
done
# 4. the one-run arms compared with the single model, paired by seed
$PY -m recipelab.report "$OUT/arms"
echo "ensemble_budget: results in $OUT (members/ensemble.md, arms/report.md, arms/<job>/{ensemble,evaluate}.json)"
