VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup test test-fast lint typecheck check bench demo clean proto proto-check

setup:
	@VENV='$(VENV)' bash scripts/setup.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# One tier alone: make test-unit, test-card, test-hsm, test-store, test-app, test-service,
# test-faults, test-cli (the folders under tests/).
TIERS := unit card hsm store app service faults cli radius
TIER_TARGETS := $(addprefix test-,$(TIERS))
.PHONY: $(TIER_TARGETS)

$(TIER_TARGETS): test-%: setup
	$(PY) -m pytest tests/$* $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check otphsm tests bench
	$(PY) -m ruff format --check otphsm tests bench

typecheck: setup
	$(PY) -m mypy

check: lint typecheck test

bench: setup
	@$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py $(BENCH_ARGS)

proto: setup
	PY=$(PY) bash scripts/proto.sh

proto-check: setup
	PY=$(PY) bash scripts/proto.sh --check

demo: setup
	$(PY) -m otphsm.cli.main demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
