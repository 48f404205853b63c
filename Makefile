# Set-up and entry points. Every target creates the virtual environment it needs if it is missing
# (.venv in the repository root; PYTHON picks the interpreter that builds it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: test reproduce smoke bench clean-venv

# Re-install when the dependency declaration changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[pipeline,test]'
	touch $@

## make test: the whole test suite (CPU, float64)
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## make reproduce: every table of the paper into results/ (CORES=8 by default; needs the datasets
## or network access for torchvision's downloads)
CORES ?= 8
reproduce: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

## make smoke: the same DAG on synthetic data, 2 seeds, 1 tiny epoch (results/smoke/, minutes on 2 cores)
smoke: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) --configfile config/smoke.yaml $(SNAKEMAKE_ARGS)

## make bench: time one minibatch step of every rule on the MNIST shapes (CPU; BENCH_ARGS="--device cuda" for a GPU)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/rule_step.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
