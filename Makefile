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

DIGITS := examples/pytorch-entry-point

demo: install
	$(BIN)/edge-pack build demo --target web --out dist/demo
	@# MiniLM's full-integer int8 fails its validation (cosine ~0.5 to fp32): the build writes the rest,
	@# lists the failure and exits 1; the demo goes on to show it in the verdict.
	-$(BIN)/edge-pack build demo --target android --calibration examples/demo/eval.jsonl --out dist/demo
	$(BIN)/edge-pack bench dist/demo --eval examples/demo/eval.jsonl --sla examples/demo/edge-pack.toml
	cd $(DIGITS) && $(CURDIR)/$(BIN)/python digits_cnn.py $(CURDIR)/dist/digits-eval.npz $(CURDIR)/dist/digits-calibration.npz
	cd $(DIGITS) && $(CURDIR)/$(BIN)/edge-pack build digits_cnn:factory --target android \
		--calibration $(CURDIR)/dist/digits-calibration.npz --out $(CURDIR)/dist/digits
	$(BIN)/edge-pack bench dist/digits --eval dist/digits-eval.npz --sla examples/demo/edge-pack.toml

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf dist .cache .pytest_cache
