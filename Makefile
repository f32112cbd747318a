# Two commands on a fresh machine:
#   make test        set up .venv (if needed) and run the test suite
#   make reproduce   set up .venv (if needed) and run the whole pipeline (CONFIG=config/config.yaml)
PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= config/config.yaml
CORES  ?= 8
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test reproduce smoke setup clean-results bench

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
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --rerun-incomplete

smoke:
	$(MAKE) reproduce CONFIG=config/smoke.yaml CORES=2

bench: $(STAMP)
	$(BIN)/python -m bench.run_all --small
