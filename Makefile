# Set-up and entry points. Every target creates the virtual environment it needs if it is missing
# (.venv in the repository root; PYTHON picks the interpreter that builds it).
#
#   make test                      the test suite (CPU, float64)
#   make test TORCH=cpu            the same, installing PyTorch's CPU-only wheels (no CUDA download)
#   make reproduce                 every table and figure of the paper into results/
#   make reproduce DATASETS=mnist  only the MNIST (and Frozen-MNIST) cells; DATASETS=mnist,cifar10 …
#   make data                      only the dataset downloads (DATASETS= as above)
#   make smoke                     the whole pipeline on synthetic data, offline, into results/smoke/
#   make report                    results/report.html (Snakemake's report of the tables and figures)
#   make campaign MINUTES=150 DATASETS=mnist   a time-boxed campaign of the pending runs, from a fixed commit
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# TORCH=cpu: install torch and torchvision from PyTorch's CPU-only index before the rest (laptops, CI-like
# machines without a GPU: about 200 MB instead of several GB of CUDA libraries)
TORCH  ?=
TORCH_INDEX := https://download.pytorch.org/whl/cpu

.PHONY: test test-fast reproduce data smoke report check-config bench campaign tables clean-venv

# INSTALL=no: use the environment VENV as it is (one that already has the dependencies: a conda environment,
# a shared one; e.g. make test INSTALL=no VENV=$$CONDA_PREFIX): nothing is installed, nothing downloaded.
INSTALL ?= yes
ifeq ($(INSTALL),no)
READY := check-env
else ifeq ($(INSTALL),yes)
READY := $(VENV)/.installed
else
$(error INSTALL=$(INSTALL): valid values are yes (build or update .venv) or no (use VENV as it is))
endif

.PHONY: check-env
check-env:
	@test -x $(BIN)/python || { echo "INSTALL=no: $(BIN)/python does not exist; set VENV to an environment with the dependencies (pyproject.toml)" >&2; exit 2; }
	@$(BIN)/python -c "import tp, torch, snakemake, pytest" || { echo "INSTALL=no: $(VENV) lacks a dependency (above); install '.[pipeline,test]' into it or drop INSTALL=no" >&2; exit 2; }

# Re-install when the dependency declaration changes (pip is upgraded only in a new environment, so an
# up-to-date one needs no network).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --upgrade --quiet pip; }
ifeq ($(TORCH),cpu)
	$(BIN)/python -m pip install --quiet torch torchvision --index-url $(TORCH_INDEX)
else ifneq ($(TORCH),)
	$(error TORCH=$(TORCH): valid values are cpu (PyTorch's CPU-only wheels) or empty (pip's default build))
endif
	$(BIN)/python -m pip install --quiet -e '.[pipeline,test]'
	touch $@

## make test: the whole test suite (CPU, float64)
test: $(READY)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## make test-fast: the tests to run before each commit, without those marked slow (docs/testing.md)
test-fast: $(READY)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

## make reproduce: every table of the paper into results/ (CORES: this machine's CPU count by default; every
## training job runs one thread, so CORES jobs train at once).  First the downloads of the
## missing datasets (`make data`; offline they fail with the reason and the fix, and the rest goes on), then
## everything the data present allows, with --keep-going: cells whose data is missing are left out and marked
## "not run: dataset missing" in the tables, and the run ends non-zero with a summary of what to do.
## DATASETS=mnist,fashion-mnist,cifar10 selects datasets; DATA_ROOT=/datasets points at pre-downloaded files.
## CONFIG='key=value …' adds pipeline settings (Snakemake's --config; don't pass --config in SNAKEMAKE_ARGS).
comma     := ,
CORES     ?= $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
DATASETS  ?=
DATA_ROOT ?=
CONFIG    ?=
SNAKEMAKE := $(BIN)/snakemake --cores $(CORES) --keep-going
# the --config entries: the dataset selection, the data root, and (second step) no downloads
config_of = $(strip $(if $(DATASETS),'datasets=[$(DATASETS)]') $(CONFIG) $(1))
fetch_cfg := $(call config_of,$(if $(DATA_ROOT),'data={root: $(DATA_ROOT)}'))
run_cfg   := $(call config_of,'data={$(if $(DATA_ROOT),root: $(DATA_ROOT)$(comma) )download: false}')
reproduce: $(READY)
	-$(SNAKEMAKE) $(if $(fetch_cfg),--config $(fetch_cfg)) $(SNAKEMAKE_ARGS) -- fetch_data
	$(SNAKEMAKE) --config $(run_cfg) $(SNAKEMAKE_ARGS)

## make data: download the missing datasets into data/ (or DATA_ROOT), nothing else
data: $(READY)
	$(SNAKEMAKE) $(if $(fetch_cfg),--config $(fetch_cfg)) $(SNAKEMAKE_ARGS) -- fetch_data

## make smoke: the same DAG on synthetic data, 2 seeds, 1 tiny epoch (results/smoke/, minutes on 2 cores)
smoke: $(READY)
	$(BIN)/snakemake --cores $(CORES) --configfile config/smoke.yaml $(SNAKEMAKE_ARGS)

## make report: Snakemake's HTML report of the tables and figures with captions, from the runs present (first
## the tables and figures they allow, as make tables; SEEDS, DATASETS, DATA_ROOT as there)
## (REPORT_CONFIG=config/smoke.yaml: the smoke run's report, of a finished make smoke)
REPORT_CONFIG ?=
REPORT        ?= results/report.html
report: $(READY)
ifeq ($(REPORT_CONFIG),)
	$(BIN)/snakemake --cores 1 --config $(tables_cfg) $(SNAKEMAKE_ARGS)
	$(BIN)/snakemake --cores 1 --config $(tables_cfg) --report $(REPORT) $(SNAKEMAKE_ARGS)
else
	$(BIN)/snakemake --configfile $(REPORT_CONFIG) --report $(REPORT) $(SNAKEMAKE_ARGS)
endif

## make check-config CONFIGFILE=my.yaml: its YAML syntax (file, line, column) and its keys against the pipeline
## schema, on top of config/config.yaml (Snakemake's own message for a broken --configfile names neither)
CONFIGFILE ?=
check-config: $(READY)
	@test -n "$(CONFIGFILE)" || { echo "make check-config: give the file, e.g. CONFIGFILE=config/smoke.yaml" >&2; exit 2; }
	$(BIN)/python workflow/scripts/check_config.py $(CONFIGFILE)

## make bench: time one minibatch step of every rule on the MNIST shapes (CPU; BENCH_ARGS="--device cuda" for a GPU)
bench: $(READY)
	$(BIN)/python benchmarks/rule_step.py $(BENCH_ARGS)

## make campaign MINUTES=150 DATASETS=mnist [SEEDS=1,2,3] [COMMIT=HEAD] [DATA_ROOT=…]: the pending runs of
## the toy figures, Table S7 (its seed-42 searches, then damping_stability's seeds), seed 1 of Table 1 and 2,
## the Fig. 4 alignment runs, the other seeds of Table 1 and 2, the other alignment runs and beyond the paper
## (ggn) that fit in MINUTES, from a git worktree of COMMIT (CAMPAIGN_ARGS="--stages table2": some stages only;
## workflow/scripts/campaign_plan.py); finished runs are copied into results/runs/ and the tables rebuilt
## (docs/pipeline.md)
MINUTES ?=
SEEDS   ?= 1,2,3
COMMIT  ?= HEAD
campaign: $(READY)
	$(if $(MINUTES),,$(error MINUTES=…: give the campaign's time box in minutes, e.g. make campaign MINUTES=150))
	$(BIN)/python workflow/scripts/campaign.py --minutes $(MINUTES) --datasets $(or $(DATASETS),mnist) \
		--seeds $(SEEDS) --commit $(COMMIT) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(CAMPAIGN_ARGS)

## make tables: the tables, figures and results/README.md from the runs present (no training); SEEDS as above;
## cells of datasets neither under the data root (DATA_ROOT) nor run say "not run: dataset missing"
tables_cfg = partial=true 'seeds=[$(SEEDS)]' $(if $(DATASETS),'datasets=[$(DATASETS)]') \
	'data={$(if $(DATA_ROOT),root: $(DATA_ROOT)$(comma) )download: false}'
tables: $(READY)
	$(BIN)/snakemake --cores 1 --config $(tables_cfg) $(SNAKEMAKE_ARGS)

clean-venv:
	rm -rf $(VENV)
