# road-repro: every target creates its own virtual environment (.venv) on first use.
#   make reproduce-all            every table at the smoke scale, then the HTML report
#   make reproduce-all PROFILE=mini | PROFILE=paper
#   make reproduce-all PROFILE=paper NPROC=8   each table's stages through torchrun on 8 GPUs first
#   make reproduce-all PROFILE=paper DRY_RUN=1 plan only: every stage, steps, examples, GPU-hours; no training, no download
#   make test                     the test suite (offline; real-data tests use ../shared/data when present)
#   make bench                    speed/memory benchmarks vs the Hugging Face Trainer -> results/bench/
#   make gpu-check                on CUDA GPUs, < 8 min: GPU tests, GPU benchmark -> results/bench/gpu.csv, a capped mini table (torchrun over all GPUs)
# bash: reproduce-all streams each notebook's stderr through a process substitution (see there).
SHELL := /bin/bash
PYTHON ?= python3
PROFILE ?= smoke
NPROC ?= 1
TEST_WORKERS ?= 2
RESULTS ?= results
DRY_RUN ?=
VENV := .venv
PY := $(VENV)/bin/python
# Every table of the paper and the blog, in an order in which later tables reuse earlier ones' stages.
TABLES := table2 table3 table4 table5 table6 table7 blog_passstep blog_teacher blog_distilled_teacher \
          blog_hidden_state blog_final blog_other_tasks
NOTEBOOKS := $(foreach t,$(TABLES),notebooks/$(t).ipynb)

.PHONY: install test bench gpu-check reproduce-all reproduce report clean-results

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

test: install
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 \
	  && [ "$$(id -u)" = 0 ] && echo "make test: installing chromium, chromium-driver for the browser test (about 1 min)" \
	  && apt-get update -qq >/dev/null 2>&1 \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } \
	  || echo "make test: no chromium/chromedriver (needs root and apt-get): the browser test will skip"
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

bench: install
	$(PY) -m benchmarks.run_all --out $(RESULTS)/bench

# The GPU check (benchmarks/gpu_check.py): stops at once without CUDA; else `pytest -m gpu`, the GPU benchmark
# (-> $(RESULTS)/bench/gpu.csv) and Table 5 at the mini scale capped to minutes (reads ../shared/data; skipped,
# saying why, without; through torchrun over every visible GPU when there are several). Each part runs under its own time limit, the whole under 460 s (timeout: a backstop).
gpu-check: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 timeout -k 5 470 \
	  $(PY) -m benchmarks.gpu_check --out $(RESULTS)/bench

# Runs each table's notebook with papermill (executed copies land in results/<profile>/notebooks/),
# then rebuilds results/<profile>/report/index.html. Finished stages are cached in results/runs/.
# With NPROC > 1 each table's stages are first computed by torchrun (DDP over NPROC GPUs); the
# notebook then finds them cached and only renders. DRY_RUN=1 only plans (--dry-run) and stops.
# Each notebook's stderr (one line per stage) streams to the console through a pipe: papermill opens its
# --stderr-file for writing, which would empty a log file that make's own stderr is redirected to.
reproduce-all: install
ifneq ($(filter 1 true yes,$(DRY_RUN)),)
	@$(PY) -m road_repro.experiments $(TABLES) --profile $(PROFILE) --output-dir $(RESULTS) --dry-run
else
	@mkdir -p $(RESULTS)/$(PROFILE)/notebooks
	@$(PY) -m road_repro.experiments $(TABLES) --profile $(PROFILE) --output-dir $(RESULTS) --plan
	@k=0; for nb in $(NOTEBOOKS); do \
	  k=$$((k + 1)); echo "== [table $$k/$(words $(NOTEBOOKS))] $$nb ($(PROFILE))"; \
	  if [ "$(NPROC)" -gt 1 ]; then \
	    $(VENV)/bin/torchrun --nproc_per_node $(NPROC) -m road_repro.experiments $$(basename $$nb .ipynb) \
	      --profile $(PROFILE) --output-dir $(RESULTS) || exit 1; \
	  fi; \
	  $(PY) -m papermill --log-level WARNING --stderr-file >(cat >&2) $$nb $(RESULTS)/$(PROFILE)/notebooks/$$(basename $$nb) \
	    -k python3 -p profile $(PROFILE) -p output_dir $(RESULTS) || exit 1; \
	done
	$(PY) -m road_repro.report --profile $(PROFILE) --output-dir $(RESULTS)
endif

# One table: make reproduce TABLE=table5 [PROFILE=...]
reproduce: install
	@mkdir -p $(RESULTS)/$(PROFILE)/notebooks
	@$(PY) -m road_repro.experiments $(TABLE) --profile $(PROFILE) --output-dir $(RESULTS) --preflight
	$(PY) -m papermill notebooks/$(TABLE).ipynb $(RESULTS)/$(PROFILE)/notebooks/$(TABLE).ipynb \
	  -k python3 -p profile $(PROFILE) -p output_dir $(RESULTS)
	$(PY) -m road_repro.report --profile $(PROFILE) --output-dir $(RESULTS)

report: install
	$(PY) -m road_repro.report --profile $(PROFILE) --output-dir $(RESULTS)

clean-results:
	rm -rf $(RESULTS)/$(PROFILE)
