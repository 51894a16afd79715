"""Runner double: the real onnxruntime runner, whose outputs for the q8 file (model_quantized.onnx) hold NaN,
as a broken quantization of a real model does."""
from __future__ import annotations

import numpy as np

from edge_pack.runners import ort


def run(files, samples, latency_input, options):
    result = ort.run(files, samples, latency_input, options)
    if "model_quantized" in files[0].name:
        for outputs in result.outputs[::2]:  # every other eval input
            for name, value in outputs.items():
                outputs[name] = np.full_like(np.asarray(value, dtype=np.float32), np.nan)
    return result
