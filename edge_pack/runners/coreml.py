"""Core ML itself (harness/ios/run.py, MLModel.predict) on macOS, with the compute units chosen by
RunOptions.extra["compute_units"] (declared in targets/ios.toml: all, cpu, cpu-gpu, cpu-ne). Core ML exists only on Apple systems:
elsewhere the package runs in the emulator, and the results name the emulator as their runtime."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from . import RunOptions, RunResult, coreml_emulator
from .local import run_harness


def here() -> str | None:
    """What runs on this machine instead, when not Core ML itself."""
    return None if sys.platform == "darwin" else "macOS only — the emulator measures here (no device latency)"


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
        asks=None) -> RunResult:
    if options.task == "text-generation":  # the stateful program (KV cache as Core ML state): coreml_decoder.py
        from . import coreml_decoder

        backend = {"backend": "coreml"} if sys.platform == "darwin" else {}
        return coreml_decoder.run(files, samples, latency_input if options.runs else None,
                                  replace(options, extra={**options.extra, **backend}), asks=asks)
    if sys.platform != "darwin":
        return coreml_emulator.run(files, samples, latency_input, options)
    return run_harness("ios/run.py", coreml_emulator.package_root(files), samples, latency_input, options,
                       extra={"compute_units": options.extra.get("compute_units", "all")})
