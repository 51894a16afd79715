# Two commands on a fresh machine: `make demo` and `make test` (both create .venv and install first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Intermediates (fp32 exports, test models) are cached inside the checkout, git-ignored.
export EDGE_PACK_CACHE ?= $(CURDIR)/.cache/edge-pack

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when the dependency declarations change.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -c constraints.txt -e '.[all,dev]'
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/edge-pack build demo --target web --target ios --out dist/demo
	$(BIN)/edge-pack bench dist/demo --eval examples/demo/eval.jsonl --sla examples/demo/edge-pack.toml

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf dist .cache .pytest_cache
