"""The Core ML emulator (harness/ios/mil_emulator.py) in a child process: a package's outputs on systems
without Core ML, exact to torch on an fp32 package. It takes no timings: its results carry the note
"emulated — no device latency" instead. RunOptions.extra["fp32"] runs float math in fp32."""
from __future__ import annotations

from pathlib import Path

from . import RunOptions, RunResult
from .local import run_harness


def package_root(files: list[Path]) -> Path:
    """The .mlpackage folder an artifact's files belong to."""
    path = Path(files[0])
    for folder in (path, *path.parents):
        if folder.suffix == ".mlpackage":
            return folder
    raise ValueError(f"{path} is not inside an .mlpackage")


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
        asks=None) -> RunResult:
    if options.task == "text-generation":  # the stateful decoder program: coreml_decoder.py, emulated
        from . import coreml_decoder

        return coreml_decoder.run(files, samples, None, options, asks=asks)
    return run_harness("ios/emulate.py", package_root(files), samples, latency_input, options,
                       extra={"fp32": bool(options.extra.get("fp32", False))})
