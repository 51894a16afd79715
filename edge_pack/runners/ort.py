"""onnxruntime on this machine (Python, CPU): the reference runtime for ONNX artifacts."""
from __future__ import annotations

from pathlib import Path

from . import RunOptions, RunResult, with_asks
from .local import run_harness


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
        asks=None) -> RunResult:
    # A decoder's generation asks are answered through its KV cache (harness/ort/decoder.py).
    options = with_asks(options, asks)
    return run_harness("ort/run.py", files[0], samples, latency_input, options, extra=options.extra)
