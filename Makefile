# galileo: `make run` starts the demo, `make test` runs the checks. Both install first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck pytest test-fault bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "galileo needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@# Until 0.1.0 the distribution was named galileo (an unrelated project's name on PyPI): drop it.
	@$(BIN)/python -m pip uninstall -q -y galileo 2>/dev/null || true
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/galileo demo

lint: install
	$(BIN)/ruff check galileo workers broker tests
	$(BIN)/ruff format --check galileo workers broker tests

typecheck: install
	$(BIN)/mypy galileo workers broker

# Two pytest processes, each taking whole files (module fixtures such as the quick bench run once):
# the suite is mostly waiting on subprocesses and sockets, so 2 halve its wall time on 2 cores.
# The fault suite (-m fault: deadlines of a few seconds, workers stopped and killed) then runs in
# one process, with nothing else on the machine. PYTEST_PROCS=0 runs the first part in one process too.
PYTEST_PROCS ?= 2

pytest: install
	$(BIN)/pytest -q -n $(PYTEST_PROCS) --dist loadfile -m "not fault"
	$(BIN)/pytest -q -p no:xdist -m fault

test: lint typecheck pytest

test-fault: install
	$(BIN)/pytest -q -p no:xdist -m fault

bench: install
	$(BIN)/galileo bench --json bench-report.json

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .pytest_cache .ruff_cache bench-report.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
