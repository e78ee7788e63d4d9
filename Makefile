# road-repro: every target creates its own virtual environment (.venv) on first use.
#   make reproduce-all            every table at the smoke scale, then the HTML report
#   make reproduce-all PROFILE=mini | PROFILE=paper
#   make test                     the test suite (offline; real-data tests use ../shared/data when present)
PYTHON ?= python3
PROFILE ?= smoke
RESULTS ?= results
VENV := .venv
PY := $(VENV)/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

.PHONY: install test reproduce-all reproduce report clean-results

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q tests

# Runs each table's notebook with papermill (executed copies land in results/<profile>/notebooks/),
# then rebuilds results/<profile>/report/index.html. Finished stages are cached in results/runs/.
reproduce-all: install
	@mkdir -p $(RESULTS)/$(PROFILE)/notebooks
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb ($(PROFILE))"; \
	  $(PY) -m papermill --log-level WARNING $$nb $(RESULTS)/$(PROFILE)/notebooks/$$(basename $$nb) \
	    -k python3 -p profile $(PROFILE) -p output_dir $(RESULTS) || exit 1; \
	done
	$(PY) -m road_repro.report --profile $(PROFILE) --output-dir $(RESULTS)

# One table: make reproduce TABLE=table5 [PROFILE=...]
reproduce: install
	@mkdir -p $(RESULTS)/$(PROFILE)/notebooks
	$(PY) -m papermill notebooks/$(TABLE).ipynb $(RESULTS)/$(PROFILE)/notebooks/$(TABLE).ipynb \
	  -k python3 -p profile $(PROFILE) -p output_dir $(RESULTS)
	$(PY) -m road_repro.report --profile $(PROFILE) --output-dir $(RESULTS)

report: install
	$(PY) -m road_repro.report --profile $(PROFILE) --output-dir $(RESULTS)

clean-results:
	rm -rf $(RESULTS)/$(PROFILE)
