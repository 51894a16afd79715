# Two commands on a fresh machine: `make demo` and `make test` (both create .venv and install first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Intermediates (fp32 exports, test models) are cached inside the checkout, git-ignored.
export EDGE_PACK_CACHE ?= $(CURDIR)/.cache/edge-pack

.PHONY: demo test install web-runtimes chromium screenshot clean

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
# MiniLM's full-integer int8 for android fails its validation (cosine ~0.5 to fp32): build writes the
# rest, lists the failure and exits 1, which the demo accepts (2 and up would be a real error) so that
# the verdict shows it. A second job measures a digits CNN from a PyTorch entry point on android.
DIGITS := examples/pytorch-entry-point
demo: install web-runtimes
	cd examples/demo && { $(CURDIR)/$(BIN)/edge-pack build; [ $$? -le 1 ]; } && $(CURDIR)/$(BIN)/edge-pack bench
	cd $(DIGITS) && $(CURDIR)/$(BIN)/python digits_cnn.py eval.npz calibration.npz && \
	  $(CURDIR)/$(BIN)/edge-pack build && $(CURDIR)/$(BIN)/edge-pack bench

# The web target's runtimes beyond pip: Debian's chromium (apt-get, only when missing; it also renders
# report.html in the tests), then the npm packages pinned by harness/web/package-lock.json (`edge-pack
# setup web`: npm ci into the cache, only when they are not there; it fails naming whatever is still
# missing, e.g. Node.js).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium; }

web-runtimes: install chromium
	$(BIN)/edge-pack setup web

# The README's picture of the demo's report, made by edge-pack's own command.
screenshot: demo
	$(BIN)/edge-pack report examples/demo/dist --screenshot docs/report.png

test: install web-runtimes
	$(BIN)/python -m pytest

clean:
	rm -rf dist examples/demo/dist .cache .pytest_cache
