# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FLOORS := .venv-floors

.PHONY: install demo test test-floors bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[resmem,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/amnetvid demo

test: $(STAMP)
	$(BIN)/python -m pytest

# Checks that the dependency floors are true: a scratch venv with every `>=` of pyproject.toml's
# dependencies pinned exactly (a constraints file made from them, so the floors are written once),
# then the fast tests. torch comes by plain pip, as in `make install`.
test-floors:
	test -x $(FLOORS)/bin/python || $(PYTHON) -m venv $(FLOORS)
	$(FLOORS)/bin/pip install --quiet --upgrade pip
	sed -n 's/^ *"\([A-Za-z0-9_.-]*\)>=\([^",;]*\)",\{0,1\}$$/\1==\2/p' pyproject.toml > $(FLOORS)/floors.txt
	cat $(FLOORS)/floors.txt
	$(FLOORS)/bin/pip install --quiet -c $(FLOORS)/floors.txt -e ".[resmem,test]"
	$(FLOORS)/bin/pip check
	$(FLOORS)/bin/python -m pytest -m "not slow"

bench: $(STAMP)
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(FLOORS) report store/*/
