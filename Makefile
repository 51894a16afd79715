# Two commands on a fresh machine: `make demo` and `make test` (both create .venv and install first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Intermediates (fp32 exports, test models) are cached inside the checkout, git-ignored.
export EDGE_PACK_CACHE ?= $(CURDIR)/.cache/edge-pack

.PHONY: demo test install chromium screenshot clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when the dependency declarations change.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -c constraints.txt -e '.[all,dev]'
	touch $@

install: $(STAMP)

# The demo is a job written down in examples/demo/edge-pack.toml: build and bench read it. bench ends by
# writing report.html (and report.md, a release zip) beside results.json and printing its path.
demo: install
	cd examples/demo && $(CURDIR)/$(BIN)/edge-pack build && $(CURDIR)/$(BIN)/edge-pack bench

# Headless Chromium (Debian package) renders report.html in the tests and makes the README's screenshot.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && $(SUDO) apt-get update -q && \
	    $(SUDO) apt-get install -y -q --no-install-recommends chromium; } || \
	  echo "chromium is not installed and apt-get is not available: the report rendering tests will skip"

# The README's picture of the demo's report, made by edge-pack's own command.
screenshot: demo chromium
	$(BIN)/edge-pack report examples/demo/dist --screenshot docs/report.png

test: install chromium
	$(BIN)/python -m pytest

clean:
	rm -rf dist examples/demo/dist .cache .pytest_cache
