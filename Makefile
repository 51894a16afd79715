# Two commands on a fresh machine: `make demo` and `make test` (both create .venv and install first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Intermediates (fp32 exports, test models) are cached inside the checkout, git-ignored.
export EDGE_PACK_CACHE ?= $(CURDIR)/.cache/edge-pack

.PHONY: demo test install web-runtimes chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when the dependency declarations change.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -c constraints.txt -e '.[all,dev]'
	touch $@

install: $(STAMP)

# The web target's runtimes beyond pip: Debian's chromium (apt-get, only when missing), then the npm
# packages pinned by harness/web/package-lock.json (`edge-pack setup web`: npm ci into the cache, only
# when they are not there; it fails naming whatever is still missing, e.g. Node.js).
chromium:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

web-runtimes: install chromium
	$(BIN)/edge-pack setup web

demo: install web-runtimes
	$(BIN)/edge-pack build demo --target web --out dist/demo
	$(BIN)/edge-pack bench dist/demo --runtime browser --eval examples/demo/eval.jsonl --sla examples/demo/edge-pack.toml

test: install web-runtimes
	$(BIN)/python -m pytest

clean:
	rm -rf dist .cache .pytest_cache
