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
    pack two weights a byte), with the scales beside them: a per-channel table's fp32 scales, and a
    blockwise weight's scale tensor (fp16, one per block of 32), counted as its weight's storage, not as
    weights of their own."""
    from ai_edge_litert import schema_py_generated as schema

    data = path.read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    stored = weights = 0
    seen = set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        block_scales = set()
        for t in range(subgraph.TensorsLength()):
            quantization = subgraph.Tensors(t).Quantization()
            if quantization is not None and quantization.DetailsType() == schema.QuantizationDetails.BlockwiseQuantization:
                details = schema.BlockwiseQuantization()
                details.Init(quantization.Details().Bytes, quantization.Details().Pos)
                block_scales.add(details.Scales())
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            index = tensor.Buffer()
            if index == 0 or index in seen or tensor.Type() not in _TFLITE_WEIGHT_TYPES:
                continue
            buffer = model.Buffers(index)
            size = buffer.DataLength() or int(buffer.Size())  # inline data, or an offset past the flatbuffer
            count = int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else 1
            if not size or (count < MIN_WEIGHTS and t not in block_scales):
                continue
            seen.add(index)
            quantization = tensor.Quantization()
            stored += 8 * size + 32 * (quantization.ScaleLength() if quantization is not None else 0)
            weights += 0 if t in block_scales else count
    return stored, weights


def mlpackage_bits(path: Path) -> tuple[int, int]:
    """The ML program's weight storage: float consts at their type; a compressed weight (the constexpr ops
    Core ML expands at load) at everything it is made of: its int8/int4 data or palette indices, and the
    scales, offsets and look-up tables beside them (blocks of 32 int8 weights with an fp16 scale: 8.5 bits)."""
    import coremltools as ct
    from coremltools.converters.mil.mil import types
    from coremltools.models.utils import _apply_graph_pass

    from .quiet import captured

    with captured():
        program = _apply_graph_pass(ct.models.MLModel(str(path), skip_model_load=True), [], return_pymil_prog=True)

    def bits(var) -> int:
        """The stored bits of a const input; a constexpr input (a chained compression) counts its own parts."""
        if var.op is not None and var.op.op_type.startswith("constexpr_"):
            return sum(bits(v) for v in var.op.inputs.values() if not isinstance(v, (list, tuple)))
        if not types.is_tensor(var.sym_type) or var.val is None:
            return 0
        width = _mil_bits(types.builtin_to_string(var.dtype))
        return width * int(np.prod(var.shape)) if width else 0

    stored = weights = 0
    for operation in program.functions["main"].operations:
        output = operation.outputs[0]
        if any(c.op_type.startswith("constexpr_") for c in output.child_ops):
            continue  # part of a compressed weight: counted with it
        float_const = (operation.op_type == "const" and types.is_tensor(output.sym_type)
                       and types.is_float(output.dtype) and output.val.size > 1)
        if float_const or operation.op_type.startswith("constexpr_"):
            stored += bits(output)
            weights += int(np.prod(output.shape))
    return stored, weights


def _mil_bits(name: str) -> int | None:
    """fp16 → 16, int8 → 8, uint4 → 4 …; None for 32/64-bit integers (shapes and axes, not weights)."""
    digits = name.lstrip("abcdefghijklmnopqrstuvwxyz")
    if not digits.isdigit() or (name.startswith(("int", "uint")) and int(digits) >= 32):
        return None
    return int(digits)


_READERS = {".gguf": gguf_bits, ".onnx": onnx_bits, ".tflite": tflite_bits, ".mlpackage": mlpackage_bits}
