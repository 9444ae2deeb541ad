# Every target bootstraps .venv first, so a fresh clone needs only Python 3.10+ and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run sweep lab test lint bench harness gpu-check clean venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: the main job — one MediumNet run on the offline synthetic dataset, on the best device here
run: $(STAMP)
	$(BIN)/python -m bench

## sweep: a batch-size sweep with its report (summary.csv, report.md, plots)
sweep: $(STAMP)
	$(BIN)/python -m bench -m batch_size=16,64,256,1024 epochs=2 $(ARGS)

## lab: the lab's five parts as sweeps, each with its report
lab: $(STAMP)
	for e in cpu_vs_gpu batch_size model_complexity workers amp; do \
		$(BIN)/python -m bench experiment=$$e $(ARGS) || exit $$?; done

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## bench: lab pipeline vs tuned vs resident+lean vs bare loop, side by side
bench: $(STAMP)
	$(BIN)/python benchmarks/pipelines.py $(ARGS)

## harness: what bench's timed loop costs over a bare loop, epochs alternated in one process (PASS/FAIL/UNDECIDED)
harness: $(STAMP)
	$(BIN)/python benchmarks/harness.py $(ARGS)

## gpu-check: CUDA tests + one short run per model + figures (uses the python on PATH if .venv is absent)
gpu-check:
	sh benchmarks/gpu_check.sh

clean:
	rm -rf outputs .pytest_cache
