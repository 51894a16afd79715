"""Transformers.js in Node (onnxruntime-node on the CPU): what a server-side or Electron app runs."""
from __future__ import annotations

from pathlib import Path

from . import RunOptions, RunResult, with_asks
from . import transformers_js


def missing() -> list[str]:
    return transformers_js.missing(browser=False)


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
        asks=None) -> RunResult:
    options = with_asks(options, asks)  # a decoder's generation asks: greedy generate() (harness/web/generate.mjs)
    return transformers_js.measure("node.mjs", files, samples, latency_input, options, browser=False)


def install(progress=print) -> None:
    transformers_js.install(progress)
