# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FLOORS := .venv-floors

# pytest-xdist workers: one per core, at most 4 (each holds torch, scikit-learn and its fixtures:
# about 1.5 GB); tests/conftest.py gives each worker its share of the cores for torch.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")

.PHONY: install demo test test-fast test-floors bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[resmem,test,s3]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/amnetvid demo

# The whole suite: what CI runs.
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# The edit-test loop: the tests not marked slow (README.md says what that leaves out).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not slow"

# Checks that the dependency floors are true: a scratch venv with every `>=` of pyproject.toml's
# dependencies pinned exactly (a constraints file made from them, so the floors are written once),
# then the fast tests. torch comes by plain pip, as in `make install`.
test-floors:
	test -x $(FLOORS)/bin/python || $(PYTHON) -m venv $(FLOORS)
	$(FLOORS)/bin/pip install --quiet --upgrade pip
	sed -n 's/^ *"\([A-Za-z0-9_.-]*\)>=\([^",;]*\)",\{0,1\}$$/\1==\2/p' pyproject.toml > $(FLOORS)/floors.txt
	cat $(FLOORS)/floors.txt
	$(FLOORS)/bin/pip install --quiet -c $(FLOORS)/floors.txt -e ".[resmem,test,s3]"
	$(FLOORS)/bin/pip check
	$(FLOORS)/bin/python -m pytest -m "not slow"

bench: $(STAMP)
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(FLOORS) report store/*/
