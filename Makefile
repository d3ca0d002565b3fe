# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install tools demo test test-all bench bench-quality bench-triage bench-run bench-guarantee lint clean

help:
	@echo "make demo      create the venv, install, run the pipeline end to end on a synthetic export"
	@echo "make test      create the venv, install, run the fast test suite"
	@echo "make test-all  the full suite, slow tests included"
	@echo "make bench     ingest benchmark vs dcm2niix / SimpleITK / MONAI (writes docs/benchmarks.md)"
	@echo "make bench-quality  leave-one-device-out quality benchmark (long; writes docs/benchmarks.md)"
	@echo "make bench-triage  routes and calibration over 200 calibration redraws (long; writes docs/benchmarks.md)"
	@echo "make bench-run  triage run throughput vs forward-only, memory at 100 vs 400 studies"
	@echo "make bench-guarantee  guarantee modes over redraws and the feedback loop, simulated (minutes)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: pip then takes the local CPU wheel instead of a CUDA build.
# Local package mirrors make pip print one "Location ... ignored" line per package: filtered.
PIPQ := 2>&1 | { grep -v "^WARNING: Location" || true; }

$(STAMP): pyproject.toml | $(PY)
	set -o pipefail; $(PY) -m pip install --quiet --upgrade pip $(PIPQ)
	set -o pipefail; $(PY) -m pip install --quiet "torch==2.13.0" $(PIPQ)
	set -o pipefail; $(PY) -m pip install --quiet -e ".[dev]" $(PIPQ)
	touch $(STAMP)

install: $(STAMP)

# Optional tools (Debian packages), best effort: dcm2niix for geometry tests and benchmarks,
# chromium for the report tests (in CI, CI=true makes those fail without it).
tools:
	@command -v dcm2niix >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq dcm2niix >/dev/null) \
	      || echo "note: dcm2niix could not be installed; tests comparing against it will skip"; \
	  else echo "note: dcm2niix not installed; tests comparing against it will skip"; fi; }
	@# Headless Chromium renders the HTML reports in tests (they skip without it, except
	@# in CI, where CI=true makes them fail).
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	      || echo "note: chromium could not be installed; the report browser tests will skip"; \
	  else echo "note: chromium not installed; the report browser tests will skip"; fi; }

demo: install
	$(PY) -m triage.demo

test: install tools
	$(PY) -m pytest -m "not slow" -n 2 $(PYTEST_ARGS)

test-all: install tools
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

bench: install tools
	$(PY) -m benchmarks.ingest.run

bench-quality: install
	$(PY) -m benchmarks.quality.run

bench-triage: install
	$(PY) -m benchmarks.triage.run

bench-run: install
	$(PY) -m benchmarks.run.run

bench-guarantee: install
	$(PY) -m benchmarks.guarantee.run

lint: install
	$(VENV)/bin/ruff check triage tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
