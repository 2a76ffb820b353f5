# hetfb — every target sets up what it needs (a virtual environment from the repo's own files).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PARAMS  ?= params/quickstart.yaml
ARGS    ?=
SEEDS   ?=
RUNS    ?= outputs/quickstart
RESULTS ?=
export HETFB_DATA_DIR ?= $(abspath ../shared/data)
export TRL_EXPERIMENTAL_SILENCE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: setup reproduce seeds compare results test test-fast test-slow quality lab lab-check bench params-doc mutation clean

$(VENV)/.installed: requirements.txt requirements-embedded.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-embedded.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

## the main job: the embedded default reproduction (every Table-1 row) -> outputs/quickstart/
reproduce: setup
	$(BIN)/python -m hetfb_utils run $(PARAMS) $(ARGS)

## one run per training seed (outputs/<run>-s<seed>/; SEEDS default: the params' training.group_seeds), the data,
## selection and Base's evaluation reused; then compare them at recipe level (Multi-Bootstrap, A/A, claims)
seeds: setup
	$(BIN)/python -m hetfb_utils seeds $(PARAMS) $(if $(strip $(SEEDS)),--seeds $(SEEDS)) $(ARGS)

## runs side by side (RUNS="outputs/quickstart outputs/controls"): intervals, HD-f vs controls, paired differences
compare: setup
	$(BIN)/python -m hetfb_utils compare $(RUNS) $(ARGS)

## RESULTS.md (and the README's verdicts) generated from finished runs: by default outputs/quickstart and every
## comparison in outputs/compare/; RESULTS="run dirs" ARGS="--compare DIR" to choose
results: setup
	$(BIN)/python -m hetfb_utils results $(RESULTS) --readme $(ARGS)

## the tests (unit, integration on a tiny random model, papermill over all notebooks with params/tiny.yaml)
test: setup
	$(BIN)/python -m pytest -q $(ARGS)

## lint and format check (ruff, line length 120) of the package, tests, tools and notebooks; `make quality ARGS=--fix` mends what ruff can
quality: setup
	$(BIN)/ruff check hetfb_utils tests tools notebooks $(ARGS)
	$(BIN)/ruff format --check hetfb_utils tests tools notebooks

test-fast: setup
	$(BIN)/python -m pytest -q -m "not notebooks" $(ARGS)

test-slow: setup
	$(BIN)/python -m pytest -q -m slow --run-slow $(ARGS)

## JupyterLab on notebooks/ with the project's kernel registered ("Python (hetfb)"); as root it adds --allow-root
lab: setup
	$(BIN)/python -m ipykernel install --user --name hetfb --display-name "Python (hetfb)"
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

## every stage notebook run through JupyterLab in headless Chromium (Selenium), params/tiny.yaml by default;
## screenshots and report.json in outputs/lab-check/. Installs chromium + chromium-driver (apt) and selenium.
lab-check: setup
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
	@$(BIN)/python -c "import selenium" 2>/dev/null || $(BIN)/python -m pip install -q -r requirements-labcheck.txt
	$(BIN)/python tools/lab_check.py $(ARGS)

bench: setup
	$(BIN)/python -m hetfb_utils bench $(ARGS)

params-doc: setup
	$(BIN)/python -m hetfb_utils params-doc

## mutation testing (mutmut) of the statistics, the intervals, the metrics and the scorer with their fast tests; slow
## (2011 mutants: stats.py's 507 take about 7 minutes on 2 cores, multiboot's 637 an estimated 45-130; one module:
## ARGS='"hetfb_utils.common.stats*"'), outside CI: `mutants/` holds the run, `mutmut results` lists the survivors
mutation: setup
	@$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/python -m pip install -q -r requirements-mutation.txt
	$(BIN)/mutmut run $(ARGS); $(BIN)/mutmut results > outputs/mutation.txt; tail -5 outputs/mutation.txt

clean:
	rm -rf outputs/*/ .pytest_cache
