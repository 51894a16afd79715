"""Transformers.js in Node (onnxruntime-node on the CPU): what a server-side or Electron app runs."""
from __future__ import annotations

from .transformers_js import Runtime, install  # noqa: F401  (install: what `edge-pack setup web` runs)

_RUNTIME = Runtime("node.mjs", browser=False)
missing, run = _RUNTIME.missing, _RUNTIME.run
