"""LiteRT on this machine (ai-edge-litert's Interpreter, XNNPACK CPU): the runtime Android apps embed."""
from __future__ import annotations

import json
from pathlib import Path

from . import RunOptions, RunResult
from .local import run_harness

IO_FILE = "model_io.json"  # written by the android converter beside the .tflite files


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
        asks=None) -> RunResult:
    if options.task == "text-generation":  # prefill/decode signatures over a KV cache: litert_decoder.py
        from . import litert_decoder

        return litert_decoder.run(files, samples, latency_input if options.runs else None, options, asks=asks)
    return run_harness("litert/run.py", files[0], samples, latency_input, options,
                       extra={"layouts": layouts(files[0]),
                              "cross_check_runs": options.extra.get("cross_check_runs")})


def layouts(model: Path) -> dict[str, str]:
    """Inputs the converter turned channels-last, from the description it wrote beside the model."""
    described = model.parent / IO_FILE
    if not described.is_file():
        return {}
    entry = json.loads(described.read_text()).get(model.name, {})
    return {i["name"]: i["layout"] for i in entry.get("inputs", []) if i.get("layout") == "NHWC"}
