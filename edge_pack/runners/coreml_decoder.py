"""Stateful Core ML decoders (iOS 18, KV cache as Core ML state): harness/ios/generate.py, by default in
the MIL emulator, which executes the program itself (outputs and answers, no timings: "emulated — no
device latency"); RunOptions.extra["backend"] = "coreml" runs Core ML's MLModel.predict with its state on a
Mac (written, not run here)."""
from __future__ import annotations

from pathlib import Path

from . import RunOptions, RunResult
from .coreml_emulator import package_root
from .litert_decoder import ask_requests, speed_request
from .local import run_harness

SCRIPT = "ios/generate.py"


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
        asks=None) -> RunResult:
    backend = options.extra.get("backend", "emulator")
    extra = {"backend": backend, **ask_requests(asks), **(speed_request(latency_input) if backend == "coreml" else {})}
    if options.extra.get("prefill_len"):
        extra["prefill_len"] = int(options.extra["prefill_len"])
    return run_harness(SCRIPT, package_root(files), samples, None, options, extra=extra)
