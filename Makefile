# recipelab: `make train` and `make test` work on a fresh clone (they install first).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train test test-all test-slow lint format sync clean bench gpu-prepare ensemble evaluate \
	lr-find report dashboard results \
	ablate-optimizer ablate-batch-size ablate-normalization ablate-regularization race ablate-speed \
	ablate-momentum ablate-adaptive ablate-schedule ablate-bn-lr ablate-sparsity ablate-overfitting \
	ablate-ensemble-budget

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
		|| echo "warning: apt could not install dataset-fashion-mnist; torchvision's download is the fallback"; \
	else echo "note: as root, 'apt-get install dataset-fashion-mnist' gives the data without a download"; fi
	touch $(STAMP)

install: $(STAMP) ## create .venv/ and install the project, its pinned dependencies and the data (once)

train: install ## train the default recipe (extra Hydra overrides: make train ARGS="optimizer=adam")
	$(PY) -m recipelab.train $(ARGS)

ablate-normalization: install ## sweep: every normalization x learning rates x 3 seeds (ARGS narrows it)
	$(PY) -m recipelab.train -m experiment=ablate_normalization $(ARGS)

ablate-regularization: install ## sweep: every regularizer x augmentation none/standard/strong x 3 seeds
	$(PY) -m recipelab.train -m experiment=ablate_regularization $(ARGS)
lr-find: install ## Lightning's lr range test on the recipe: prints the suggestion, saves lr_find.png in the run folder
	$(PY) -m recipelab.lr_find $(ARGS)

ablate-optimizer: install ## the eight optimizers, each at its tuned lr, 3 seeds (a sweep)
	$(PY) -m recipelab.train -m experiment=ablate_optimizer $(ARGS)

ablate-batch-size: install ## claim 7: batch sizes 1, 32 ... 256, full on 2000 images, lr scaled by sqrt(B/256), 8 seeds
	$(PY) -m recipelab.train -m experiment=ablate_batch_size $(ARGS)

ablate-momentum: install ## claim 1: sgd vs momentum vs nesterov, each at its tuned lr, 8 seeds (a sweep)
	$(PY) -m recipelab.train -m experiment=ablate_momentum $(ARGS)

ablate-adaptive: install ## claim 2: adagrad, rmsprop, adam, adamw vs nesterov, 8 seeds (a sweep)
	$(PY) -m recipelab.train -m experiment=ablate_adaptive $(ARGS)

ablate-schedule: install ## claim 3: scheduler none vs plateau, step, cosine, onecycle, 8 seeds (a sweep)
	$(PY) -m recipelab.train -m experiment=ablate_schedule $(ARGS)

ablate-bn-lr: install ## claim 4: batchnorm vs none x constant lr 0.03, 0.3, 3.0, 8 seeds (a sweep)
	$(PY) -m recipelab.train -m experiment=ablate_bn_lr $(ARGS)

ablate-sparsity: install ## claim 5: l1 vs l2 penalty (train/sparsity), 8 seeds (a sweep)
	$(PY) -m recipelab.train -m experiment=ablate_sparsity $(ARGS)

ablate-overfitting: install ## claim 6: none/dropout/dropconnect x augmentation none/standard on 10k images, 8 seeds
	$(PY) -m recipelab.train -m experiment=ablate_overfitting $(ARGS)

ablate-ensemble-budget: install ## claim 8: single vs 5-seed / snapshot ensemble vs SWA vs EMA at equal epochs [EPOCHS=20 MEMBERS=5 SEEDS=1,2,3,4,5]
	$(if $(EPOCHS),EPOCHS=$(EPOCHS)) $(if $(MEMBERS),MEMBERS=$(MEMBERS)) $(if $(SEEDS),SEEDS=$(SEEDS)) PY=$(PY) bash scripts/ensemble_budget.sh $(ARGS)

test: install ## the fast test suite (slow tests excluded)
	$(PY) -m pytest -q $(ARGS)

test-all: install ## every test, slow ones included: what CI runs (.ci/run)
	$(PY) -m pytest -q -m "slow or not slow" $(ARGS)

test-slow: install ## only the slow tests
	$(PY) -m pytest -q -m slow $(ARGS)

ensemble: install ## evaluate an ensemble: make ensemble SOURCE=<run folder | sweep folder | glob> [ARGS=combine=vote]
	@test -n "$(SOURCE)" || { echo "usage: make ensemble SOURCE=<run folder | sweep folder | glob>"; exit 2; }
	$(PY) -m recipelab.ensemble "source=$(SOURCE)" $(ARGS)

evaluate: install ## test one checkpoint again: make evaluate CKPT=<checkpoint file | run folder> [ARGS=split=val]
	@test -n "$(CKPT)" || { echo "usage: make evaluate CKPT=<checkpoint file | run folder>"; exit 2; }
	$(PY) -m recipelab.evaluate "ckpt_path=$(CKPT)" $(ARGS)

bench: install ## benchmark vs a plain PyTorch loop → bench.json (ARGS="--full" adds time to 0.92 accuracy)
	$(PY) -m recipelab.bench $(ARGS)

race: install ## time to accuracy: 5 seeds of a recipe trained in full → race.<name> in bench.json (default: experiment=fashion_fast)
	$(PY) -m recipelab.bench --race $(if $(ARGS),$(ARGS),experiment=fashion_fast)

ablate-speed: install ## sweep: fashion_fast with one trick taken out at a time, 3 seeds each; then make report
	$(PY) -m recipelab.train -m experiment=fashion_fast_ablation $(ARGS)

gpu-prepare: install ## gather wheels and data for scripts/gpu_check.sh on an offline GPU machine
	bash scripts/gpu_prepare.sh

lint: install ## ruff: lint and format check
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: install ## ruff: fix imports and format
	$(VENV)/bin/ruff check --fix --select I src tests scripts
	$(VENV)/bin/ruff format src tests scripts

report: install ## the ablation report of a sweep (default: the newest by its folder's date and time): make report SWEEP=logs/multiruns/<date>/<time>_<name>
	$(PY) -m recipelab.report $(SWEEP) $(ARGS)

dashboard: install ## a W&B workspace for a sweep (saved with a W&B login, else its spec as dashboard.json): make dashboard SWEEP=...
	$(PY) -m recipelab.dashboard $(SWEEP) $(ARGS)

results: install ## every run's metrics.json under a folder in one table: make results [DIR=logs]
	$(PY) -m recipelab.results $(or $(DIR),logs) $(ARGS)

sync: install ## upload every offline W&B run under logs/ (needs internet and `wandb login`)
	@runs=$$(find logs -type d -name 'offline-run-*' 2>/dev/null); \
	if [ -z "$$runs" ]; then echo "no offline W&B runs under logs/"; else $(VENV)/bin/wandb sync $$runs; fi

clean: ## remove caches (logs/ and .venv/ stay: `rm -rf logs .venv` removes those)
	rm -rf .pytest_cache .ruff_cache build src/*.egg-info
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
