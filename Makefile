# Set-up and entry points. Every target creates the virtual environment it needs if it is missing
# (.venv in the repository root; PYTHON picks the interpreter that builds it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: test bench clean-venv

# Re-install when the dependency declaration changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## make test: the whole test suite (CPU, float64)
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## make bench: time one minibatch step of every rule on the MNIST shapes (CPU unless DEVICE=cuda)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/rule_step.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
