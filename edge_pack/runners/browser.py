"""Transformers.js in a real headless Chromium (onnxruntime-web, WASM): what a web page runs. The page,
Transformers.js, the WASM files and the model are served from 127.0.0.1; every request the browser makes
is recorded, and a request to any other address fails the candidate."""
from __future__ import annotations

from .transformers_js import Runtime, install  # noqa: F401  (install: what `edge-pack setup web` runs)

_RUNTIME = Runtime("browser.mjs", browser=True)
missing, run = _RUNTIME.missing, _RUNTIME.run
