"""Bits per weight as the file holds them, read from the file itself: the stored bits of every weight tensor
(with the scales and zero points stored beside them, as llama.cpp counts Q8_0 as 8.5 bits) over the
number of weights. A precision's nominal bits are its label; this is what it became (k-quants fall back on
rows that are not a multiple of 256, LiteRT int4 keeps convolutions at int8, Core ML int4 leaves small
convolutions in float16). One reader per format; None when the file's format is not known here."""
from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_WEIGHTS = 16  # smaller constants are shapes, indices and scalars, not weights


def bits_per_weight(files: list[Path]) -> float | None:
    """The bits per weight of an artifact's model file (the first file a reader knows)."""
    for path in files:
        reader = _READERS.get(_format(Path(path)))
        if reader is not None:
            stored, weights = reader(Path(path))
            return round(stored / weights, 3) if weights else None
    return None


def _format(path: Path) -> str:
    return ".mlpackage" if path.is_dir() and path.suffix == ".mlpackage" else path.suffix


def gguf_bits(path: Path) -> tuple[int, int]:
    """Every tensor's bytes as llama.cpp stores it (its blocks carry their scales)."""
    from gguf import GGUFReader

    tensors = GGUFReader(str(path)).tensors
    return sum(8 * int(t.n_bytes) for t in tensors), sum(int(t.n_elements) for t in tensors)


# onnx TensorProto data types -> bits per element
_ONNX_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 10: 16, 11: 64, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4}
_ONNX_INTEGER_SIDE = {6, 7, 12, 13}  # int32/int64/uint32/uint64: shapes and indices


def onnx_bits(path: Path) -> tuple[int, int]:
    """Initializers of an ONNX graph. MatMulNBits packs N×K weights of `bits` bits into uint8 blocks with
    scales (and zero points) beside them; DequantizeLinear weights carry their scale and zero point."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    stored = weights = 0
    consumed = set()
    for node in graph.node:
        names = [n for n in node.input if n in initializers]
        if node.op_type == "MatMulNBits" and node.input[1] in initializers:
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            weights += int(attributes["N"]) * int(attributes["K"])
            stored += sum(_onnx_stored(initializers[n]) for n in names)
            consumed.update(names)
        elif node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            weights += _numel(initializers[node.input[0]])
            stored += sum(_onnx_stored(initializers[n]) for n in names)
            consumed.update(names)
    for name, tensor in initializers.items():
        if name in consumed or tensor.data_type in _ONNX_INTEGER_SIDE or _numel(tensor) < MIN_WEIGHTS:
            continue
        weights += _numel(tensor)
        stored += _onnx_stored(tensor)
    return stored, weights


def _numel(tensor) -> int:
    return int(np.prod(tensor.dims)) if len(tensor.dims) else 1


def _onnx_stored(tensor) -> int:
    return _numel(tensor) * _ONNX_BITS.get(tensor.data_type, 32)


_TFLITE_WEIGHT_TYPES = {0, 1, 3, 9, 7, 17}  # FLOAT32, FLOAT16, UINT8, INT8, INT16, INT4


def tflite_bits(path: Path) -> tuple[int, int]:
    """Constant tensors of a .tflite flatbuffer: their buffers' bytes over their elements (int4 buffers
    pack two weights a byte; per-channel scales live in the tensor's quantization table and are left out)."""
    from ai_edge_litert import schema_py_generated as schema

    data = path.read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    stored = weights = 0
    seen = set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            index = tensor.Buffer()
            if index == 0 or index in seen or tensor.Type() not in _TFLITE_WEIGHT_TYPES:
                continue
            buffer = model.Buffers(index)
            size = buffer.DataLength() or int(buffer.Size())  # inline data, or an offset past the flatbuffer
            count = int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else 1
            if not size or count < MIN_WEIGHTS:
                continue
            seen.add(index)
            stored += 8 * size
            weights += count
    return stored, weights


_MLPROGRAM_BITS = {"fp32": 32, "fp16": 16, "int8": 8, "uint8": 8, "int4": 4, "uint4": 4}


def mlpackage_bits(path: Path) -> tuple[int, int]:
    """The ML program's weight storage: float consts at their type, compressed weights (the constexpr
    ops Core ML expands at load) at their stored type or palette index width."""
    import coremltools as ct

    from .converters.ios import weight_storage
    from .quiet import captured

    with captured():
        storage = weight_storage(ct.models.MLModel(str(path), skip_model_load=True))
    stored = weights = 0
    for form, count in storage.items():
        bits = _MLPROGRAM_BITS.get(form) or (int(form[3:]) if form.startswith("lut") and form[3:].isdigit() else None)
        if bits is None:
            continue
        stored += bits * count
        weights += count
    return stored, weights


_READERS = {".gguf": gguf_bits, ".onnx": onnx_bits, ".tflite": tflite_bits, ".mlpackage": mlpackage_bits}
