# Two commands on a fresh clone: `make demo` and `make test`. Only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# .installed: the package and what it imports at run time (make demo);
# .installed-dev: plus the test, lint and notebook tools (make test, lint, bench).
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# uv (from PyPI) installs the same wheels as pip several times faster (parallel downloads,
# no per-package subprocesses); pip is the fallback wherever uv cannot be had. Bytecode is left
# to the first import (uv's default): compiling all ~6,800 files at install, as pip does, took
# 40-50 s here, the imports of a run ~5 s. Where PYTHONDONTWRITEBYTECODE is set, every run
# then compiles its imports (~6 s CPU); `make demo` is still faster than the pip install was.
# `make INSTALLER=pip demo` forces pip.
INSTALLER ?= uv
# The pseudonymization key lives outside the tracked tree (and outside the store).
KEY ?= $(HOME)/.config/trackii_eval/demo.key

.PHONY: demo test lint bench clean setup setup-dev

setup: $(STAMP)
setup-dev: $(DEV_STAMP)

# A venv without pip takes a fraction of a second; pip's own copy (ensurepip) is only added if
# uv cannot be installed from outside the venv.
$(BIN)/python:
	@echo "==> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv --without-pip $(VENV)

# Installs into the venv with uv if it can be had, else with pip; prints progress either way.
define install
	@set -e; \
	if [ "$(INSTALLER)" = uv ] && [ ! -x $(BIN)/uv ]; then \
	  echo "==> getting the installer uv from PyPI (falls back to pip if this fails)"; \
	  $(PYTHON) -m pip --python $(BIN)/python install --quiet --progress-bar off "uv>=0.4" \
	    2>/dev/null || { $(BIN)/python -m ensurepip --upgrade >/dev/null \
	    && $(BIN)/python -m pip install --quiet --progress-bar off "uv>=0.4"; } || true; \
	fi; \
	if [ "$(INSTALLER)" = uv ] && [ -x $(BIN)/uv ]; then \
	  echo "==> installing $(1) with uv"; \
	  $(BIN)/uv pip install --python $(BIN)/python $(1); \
	else \
	  echo "==> installing $(1) with pip (a few minutes the first time)"; \
	  $(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade; \
	  $(BIN)/python -m pip install --progress-bar on $(1); \
	fi
endef

$(STAMP): pyproject.toml | $(BIN)/python
	$(call install,-e .)
	@touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(call install,-e ".[dev]")
	@touch $@

demo: $(STAMP)
	@test -f $(KEY) || $(BIN)/trackii-eval keygen --out $(KEY)
	$(BIN)/trackii-eval run surveys/demo --out build/demo --key-file $(KEY) --plan analysis/demo.yaml
	@# the demo portfolio: a second simulated study, then the funder's dashboard over both
	$(BIN)/trackii-eval run surveys/coast --out build/coast --key-file $(KEY) --plan analysis/coast.yaml
	$(BIN)/trackii-eval dashboard surveys/demo=build/demo surveys/coast=build/coast --out build/portfolio
	@echo "Open build/demo/report.html and build/portfolio/dashboard.html"

# one BLAS thread per test worker: the suite's matrices are small and threads only contend
test: $(DEV_STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 tests

lint: $(DEV_STAMP)
	$(BIN)/ruff check .

bench: $(DEV_STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build .pytest_cache
