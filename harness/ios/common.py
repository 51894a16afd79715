"""The measuring loop both iOS runners share (Core ML on a Mac, the MIL emulator elsewhere): load the
package, run every sample, time the latency input, report. Numpy and the standard library only."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

import protocol  # noqa: E402

# Core ML's multi-array types (Model.proto ArrayFeatureType) as numpy types.
ARRAY_TYPES = {65568: np.float32, 65552: np.float16, 65600: np.float64, 131104: np.int32, 131080: np.int8}


def feeds(spec, sample: dict) -> dict:
    """The sample's arrays the model takes, in the types it declares (token ids arrive as int64; Core ML
    takes int32)."""
    return {f.name: np.ascontiguousarray(sample[f.name], dtype=ARRAY_TYPES[f.type.multiArrayType.dataType])
            for f in spec.description.input}


def measure(request: dict, load, runtime: str, latency_note: str | None = None) -> None:
    """load() -> (predict(feeds) -> outputs, spec). With a latency_note the timings would not be the
    device's, so none are taken and the note says why."""
    samples, latency_input = protocol.load_inputs(request["inputs"])
    (predict, spec), load_ms, rss_before = protocol.timed_load(load)
    outputs = [predict(feeds(spec, s)) for s in samples]
    protocol.save_outputs(request["outputs"], outputs)
    latency = []
    if latency_note is None and latency_input is not None:
        inputs = feeds(spec, latency_input)
        latency = protocol.time_request(request, lambda: predict(inputs))
    protocol.write_result(request, {
        "load_ms": load_ms, "latency_ms": latency, "peak_rss_mb": protocol.peak_rss_mb(),
        "rss_before_load_mb": rss_before, "runtime": runtime, "latency_note": latency_note,
        # how the report says these numbers were obtained (protocol.py): an emulator's outputs, no timings
        "obtained": {"outputs": "emulated", "latency": "not measured"} if latency_note else {},
    })
