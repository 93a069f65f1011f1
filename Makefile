# Two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The pseudonymization key lives outside the tracked tree (and outside the store).
KEY ?= $(HOME)/.config/trackii_eval/demo.key

.PHONY: demo test lint bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	@test -f $(KEY) || $(BIN)/trackii-eval keygen --out $(KEY)
	$(BIN)/trackii-eval run surveys/demo --out build/demo --key-file $(KEY) --plan analysis/demo.yaml
	@echo "Open build/demo/report.html"

# one BLAS thread per test worker: the suite's matrices are small and threads only contend
test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build .pytest_cache
