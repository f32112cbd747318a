# Two commands on a fresh machine:
#   make test        set up .venv (if needed) and run the test suite
#   make reproduce   set up .venv (if needed) and run the whole pipeline (CONFIG=config/config.yaml)
# `make reproduce` first prints what the run will cost (vhe-estimate: pipeline/estimate.py, from the measured
# CPU benchmarks); without a GPU, a profile estimated above 6 h (the paper profile: months) starts
# only after "y" at the prompt or with CONFIRM=1. `make estimate` prints the per-model breakdown.
PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= config/config.yaml
CORES  ?= 8
CONFIRM ?=
RUN    ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test reproduce smoke setup clean-results bench estimate gpu-check lint format results-page

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# torch/torchvision pinned as a pair: the local CUDA build runs on CPU; PyPI's torchvision does not import beside it
	$(BIN)/python -m pip install "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -e ".[pipeline,test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

reproduce: $(STAMP)
	CONFIRM=$(CONFIRM) $(BIN)/vhe-estimate --gate --config $(CONFIG) --cores $(CORES)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --rerun-incomplete

estimate: $(STAMP)
	$(BIN)/vhe-estimate --config $(CONFIG) --cores $(CORES)

# on a GPU machine: measure every model of CONFIG (at most ~8 min) into results/gpu_check/gpu_rates.json and
# print the projected wall-clock with one GPU; commit the file as pipeline/gpu_rates.json (docs/operations.md)
gpu-check: $(STAMP)
	$(BIN)/python -m pipeline.gpu_check --config $(CONFIG)

smoke:
	$(MAKE) reproduce CONFIG=config/smoke.yaml CORES=2

bench: $(STAMP)
	$(BIN)/python -m bench.run_all --small

# results/<RUN>/ (all runs when RUN is empty) and Snakemake's records of them; keeps resources/
# (downloads and prepared data) and .venv/
clean-results:
	rm -rf results/$(RUN)
	rm -rf .snakemake/metadata .snakemake/incomplete .snakemake/log

# one house style (settings in pyproject.toml): ruff for the Python sources, snakefmt for the workflow
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile rules/

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile rules/

# a finished run's tables as docs/results/<today>-<RUN>.md (RUN=cpu, smoke, ...)
results-page: $(STAMP)
	test -n "$(RUN)" || { echo "usage: make results-page RUN=<run>"; exit 2; }
	$(BIN)/vhe-results-page results/$(RUN)
