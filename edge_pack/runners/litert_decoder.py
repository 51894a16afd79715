"""LiteRT decoders on this machine: the interpreter drives the `prefill_<n>` and `decode` signatures of a
litert-torch generative .tflite over its KV cache (harness/litert/generate.py, the same code a device runs).
Samples ({"input_ids": ids}) come back as logits at every position through the cache path; asks (the
generation protocol of edge_pack/generation.py) come back as answers."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import RunOptions, RunResult
from .local import run_harness

SCRIPT = "litert/generate.py"
SPEED_TOKENS = 32  # decode steps timed after the latency prompt


def speed_request(latency_input: dict | None) -> dict:
    """The harness's speed request from the latency input's token ids (none: speed is not timed)."""
    if not latency_input:
        return {}
    return {"speed": {"prompt": [int(t) for t in np.asarray(latency_input["input_ids"]).reshape(-1)],
                      "tokens": SPEED_TOKENS}}


def ask_requests(asks) -> dict:
    return {"asks": [a if isinstance(a, dict) else a.to_json() for a in asks]} if asks else {}


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
        asks=None) -> RunResult:
    model = next(f for f in files if f.suffix == ".tflite")
    return run_harness(SCRIPT, model, samples, None, options,
                       extra={**speed_request(latency_input), **ask_requests(asks)})
