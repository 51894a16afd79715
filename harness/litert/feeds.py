"""Fit a sample (as the PyTorch source takes it) to a LiteRT signature and read its outputs back; numpy
only, because it runs on devices beside run.py and in the converter, for calibration.

- layout: an image the source takes as NCHW is transposed to the NHWC the model was converted for;
- fixed shapes: token inputs shorter than the model's sequence are padded with zeros (masked out), and
  outputs are cut back to the sample's own length, so they compare position for position;
- types: token ids are cast to the model's integer type, floats are quantized with the input tensor's own
  scale and zero point when the model takes int8/uint8, and quantized outputs are dequantized.
"""
from __future__ import annotations

import numpy as np

QUANTIZED = (np.int8, np.uint8, np.int16)


def fit(sample: dict, details: dict, layouts: dict) -> tuple[dict, tuple[int, int] | None]:
    """Feeds for a signature runner, and (the sample's own length, the model's) when it was padded."""
    feeds, cut = {}, None
    for name, detail in details.items():
        if name not in sample:
            raise ValueError(f"the model takes input {name}, which the sample lacks (it has {', '.join(sample)})")
        value = np.asarray(sample[name])
        if layouts.get(name) == "NHWC" and value.ndim == 4:
            value = value.transpose(0, 2, 3, 1)
        shape = tuple(int(d) for d in detail["shape"])
        if value.shape != shape:
            own = value.shape[1] if value.ndim >= 2 else None
            value = _pad(name, value, shape)
            cut = (own, shape[1])
        feeds[name] = _cast(value, detail)
    return feeds, cut


def _pad(name: str, value: np.ndarray, shape: tuple) -> np.ndarray:
    same_rank = value.ndim == len(shape) and value.ndim >= 2
    if same_rank and value.dtype.kind in "iub" and value.shape[2:] == shape[2:] and value.shape[0] == shape[0]:
        if value.shape[1] > shape[1]:
            raise ValueError(f"input {name} has {value.shape[1]} positions; the model takes at most {shape[1]}")
        width = [(0, 0)] * value.ndim
        width[1] = (0, shape[1] - value.shape[1])
        return np.pad(value, width)
    raise ValueError(f"input {name} has shape {tuple(value.shape)}; the model takes {shape}")


def _cast(value: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if dtype.type in QUANTIZED and value.dtype.kind == "f" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(value / scale + zero_point), info.min, info.max).astype(dtype)
    return value.astype(dtype)


def read(outputs: dict, details: dict, cut: tuple[int, int] | None) -> dict:
    """Float outputs (dequantized), cut back to the sample's own sequence length."""
    result = {}
    for name, value in outputs.items():
        value = np.asarray(value)
        scale, zero_point = details[name].get("quantization", (0.0, 0))
        if value.dtype.type in QUANTIZED and scale:
            value = (value.astype(np.float32) - zero_point) * np.float32(scale)
        if cut is not None and value.ndim >= 2 and value.shape[1] == cut[1]:
            value = value[:, :cut[0]]
        result[name] = value
    return result
