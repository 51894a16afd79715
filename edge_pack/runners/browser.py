"""Transformers.js in a real headless Chromium (onnxruntime-web, WASM): what a web page runs. The page,
Transformers.js, the WASM files and the model are served from 127.0.0.1; every request the browser makes
is recorded, and a request to any other address fails the candidate."""
from __future__ import annotations

from pathlib import Path

from . import RunOptions, RunResult, with_asks
from . import transformers_js


def missing() -> list[str]:
    return transformers_js.missing(browser=True)


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
        asks=None) -> RunResult:
    options = with_asks(options, asks)  # a decoder's generation asks: greedy generate() (harness/web/generate.mjs)
    return transformers_js.measure("browser.mjs", files, samples, latency_input, options, browser=True)


def install(progress=print) -> None:
    transformers_js.install(progress)
