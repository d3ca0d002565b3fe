# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install tools demo test test-all typecheck bench bench-quality bench-triage bench-run bench-efficiency bench-table1 bench-lodo bench-site bench-strategies-smoke bench-ray bench-ray-nodes bench-monitor bench-guarantee bench-pacs lint clean

help:
	@echo "make demo      create the venv, install, run the pipeline end to end on a synthetic export"
	@echo "make test      create the venv, install, mypy, the fast test suite and the doctests"
	@echo "make test-all  the full suite, slow tests included"
	@echo "make bench     ingest benchmark vs dcm2niix / SimpleITK / MONAI (writes docs/benchmarks.md)"
	@echo "make bench-quality  leave-one-device-out quality benchmark (long; writes docs/benchmarks.md)"
	@echo "make bench-triage  routes and calibration over 200 calibration redraws (long; writes docs/benchmarks.md)"
	@echo "make bench-run  triage run throughput vs forward-only, memory at 100 vs 400 studies"
	@echo "make bench-efficiency  model variants (fp32, ONNX, int8, pruned, distilled) and a MONAI peer pipeline"
	@echo "make bench-monitor  drift alarms: detection delay per shift, false-alarm rate through triage run (STABLE=2000 studies, ~6 min) and simulated"
	@echo "make bench-table1  training strategies, the seed study's Table 1 (3 seeds; long)"
	@echo "make bench-lodo  leave-one-device-out over every device x 3 shifts (3 seeds; long)"
	@echo "make bench-site  site adaptation with 50 / 100 labelled studies (long)"
	@echo "make bench-pacs  triage listen latency to an SR in Orthanc, triage run from DICOMweb vs folder (STUDIES=100)"
	@echo "make bench-strategies-smoke  the three above, 1 seed, 1 fold, 1 epoch (not written to docs)"
	@echo "make bench-ray  triage run --engine local vs ray on this machine (writes docs/benchmarks.md)"
	@echo "make bench-ray-nodes  triage run on a simulated two-node Ray cluster, one node removed"
	@echo "make bench-guarantee  guarantee modes over redraws and the feedback loop, simulated (minutes)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: pip then takes the local CPU wheel instead of a CUDA build.
# Local package mirrors make pip print one "Location ... ignored" line per package: filtered.
PIPQ := 2>&1 | { grep -v "^WARNING: Location" || true; }

$(STAMP): pyproject.toml | $(PY)
	set -o pipefail; $(PY) -m pip install --quiet --upgrade pip $(PIPQ)
	set -o pipefail; $(PY) -m pip install --quiet "torch==2.13.0" $(PIPQ)
	set -o pipefail; $(PY) -m pip install --quiet -e ".[dev,ray]" $(PIPQ)
	touch $(STAMP)

install: $(STAMP)

# Debian tools the tests use: dcm2niix (geometry reference, best effort: those tests skip
# without it); Orthanc with its DICOMweb plugin plus dicom3tools (dciodvfy) for the PACS
# tests and chromium for the HTML report tests, which fail rather than skip in CI (CI=true)
# when these are missing.
tools:
	@missing=""; \
	command -v dcm2niix >/dev/null 2>&1 || missing="$$missing dcm2niix"; \
	command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || missing="$$missing orthanc"; \
	[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing="$$missing orthanc-dicomweb"; \
	command -v dciodvfy >/dev/null 2>&1 || missing="$$missing dicom3tools"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "note: could not install:$$missing (their tests fail in CI without them)"; \
	  else echo "note: not installed:$$missing (run 'make tools' as root; their tests skip locally)"; fi; \
	fi

demo: install
	$(PY) -m triage.demo

# mypy first (incremental: seconds after the first run), then tests/ and every `>>>`
# example under triage/ (--doctest-modules).
test: install tools typecheck
	$(PY) -m pytest -m "not slow" -n 2 --doctest-modules tests triage $(PYTEST_ARGS)

typecheck: install
	$(PY) -m mypy

test-all: install tools typecheck
	$(PY) -m pytest -n 2 --doctest-modules tests triage $(PYTEST_ARGS)

bench: install tools
	$(PY) -m benchmarks.ingest.run

bench-quality: install
	$(PY) -m benchmarks.quality.run

bench-triage: install
	$(PY) -m benchmarks.triage.run

bench-run: install
	$(PY) -m benchmarks.run.run

bench-ray: install
	$(PY) -m benchmarks.run.ray_compare

bench-ray-nodes: install
	$(PY) -m benchmarks.run.two_nodes

STUDIES ?= 100
bench-pacs: install tools
	$(PY) -m benchmarks.pacs.run --studies $(STUDIES)

bench-efficiency: install
	$(PY) -m benchmarks.efficiency.run

STABLE ?= 2000
bench-monitor: install
	$(PY) -m benchmarks.monitor.run --pipeline-stable $(STABLE)

bench-table1: install
	$(PY) -m benchmarks.strategies.run --mode table1

bench-lodo: install
	$(PY) -m benchmarks.strategies.run --mode lodo

bench-site: install
	$(PY) -m benchmarks.strategies.run --mode site

bench-strategies-smoke: install
	for mode in table1 lodo site; do \
	  $(PY) -m benchmarks.strategies.run --mode $$mode --quick --doc bench_output/strategies/smoke.md \
	    || exit 1; done

bench-guarantee: install
	$(PY) -m benchmarks.guarantee.run

lint: install
	$(VENV)/bin/ruff check triage tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
