# Two commands on a fresh machine:
#   make test        set up .venv (if needed) and run the test suite
#   make reproduce   set up .venv (if needed) and run the whole pipeline (CONFIG=config/config.yaml)
# `make reproduce` first prints what the run will cost (scripts/estimate_cost.py, from the measured
# CPU benchmarks); without a GPU, a profile estimated above 6 h (the paper profile: months) starts
# only after "y" at the prompt or with CONFIRM=1. `make estimate` prints the per-model breakdown.
PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= config/config.yaml
CORES  ?= 8
CONFIRM ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test reproduce smoke setup clean-results bench estimate

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
	CONFIRM=$(CONFIRM) $(BIN)/python scripts/estimate_cost.py --gate --config $(CONFIG) --cores $(CORES)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --rerun-incomplete

estimate: $(STAMP)
	$(BIN)/python scripts/estimate_cost.py --config $(CONFIG) --cores $(CORES)

smoke:
	$(MAKE) reproduce CONFIG=config/smoke.yaml CORES=2

bench: $(STAMP)
	$(BIN)/python -m bench.run_all --small
