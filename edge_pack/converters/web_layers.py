"""The web target layer by layer: each MatMul with a constant weight, and the embedding table, at its own
precision, made with onnxruntime's own per-node controls:
- 4 bits (q4): MatMulNBitsQuantizer with nodes_to_exclude naming every MatMul that stays otherwise
  (onnxruntime/python/tools/quantization/matmul_nbits_quantizer.py: "when a node is in nodes_to_exclude ...");
- 8 bits (q8): quantize_dynamic with nodes_to_quantize naming the 8-bit MatMuls (int8 per-channel weights,
  MatMulInteger: what the uniform q8 runs in the browser);
- the embedding table: MatMulNBits blocks of 4 or 8 bits looked up with plain ops (web_decoder's lookup:
  onnxruntime-web has no GatherBlockQuantized kernel).
Layers not named stay float32."""
from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from ..contracts import Layer
from .web_decoder import embedding, quantize_lookup

LOW, HIGH = "q4", "q8"
BITS = {LOW: 4, HIGH: 8}
Q4_BLOCK = 32


def _named(model):
    """Every node with a name (the per-node controls select by name); the export's names are kept."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    return model


def _matmuls(model) -> dict[str, onnx.TensorProto]:
    """MatMul nodes with a constant 2-D weight, by node name, with that weight."""
    inits = {t.name: t for t in model.graph.initializer}
    return {n.name: inits[n.input[1]] for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2}


def _count(tensor) -> int:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def layers(path: Path) -> list[Layer]:
    """The layers of the fp32 graph at `path` whose precision can be set one by one, with their stored
    size as float, q4 (4 bits + a float32 scale per 32) and q8 (8 bits; the table's blocks carry scales)."""
    model = _named(onnx.load(str(path)))
    found = []
    for name, weight in _matmuls(model).items():
        n = _count(weight)
        found.append(Layer(name, "matmul", n, {"float": 4 * n, LOW: n * 5 // 8, HIGH: n}))
    gather = embedding(model)
    if gather is not None:
        n = _count(next(t for t in model.graph.initializer if t.name == gather.input[0]))
        found.append(Layer(gather.name, "embedding", n, {"float": 4 * n, LOW: n * 5 // 8, HIGH: n * 9 // 8}))
    return found


def quantize_layers(path: Path, levels: dict[str, str], out: Path, save) -> dict:
    """Write the fp32 graph at `path` to `out` with each named layer at its level (q4 or q8); returns the recipe."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 MatMulNBitsQuantizer)

    model = _named(onnx.load(str(path)))
    matmuls = _matmuls(model)
    unknown = sorted(set(levels) - set(matmuls) - {getattr(embedding(model), "name", None)})
    if unknown or set(levels.values()) - set(BITS):
        raise ValueError(f"no such layer or level: {unknown or sorted(set(levels.values()) - set(BITS))}")
    four = {n for n in matmuls if levels.get(n) == LOW}
    eight = sorted(n for n in matmuls if levels.get(n) == HIGH)
    if four:
        config = DefaultWeightOnlyQuantConfig(block_size=Q4_BLOCK, is_symmetric=True, op_types_to_quantize=("MatMul",))
        quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=sorted(set(matmuls) - four), algo_config=config)
        quantizer.process()
        model = quantizer.model.model
    gather = embedding(model)
    table = levels.get(gather.name) if gather is not None else None
    if table is not None:
        quantize_lookup(model, gather, BITS[table])
    if eight:
        with tempfile.TemporaryDirectory(prefix="mixed-") as tmp:
            staged = Path(tmp) / "model.onnx"
            save(model, staged)
            # Per-channel int8 weights, no reduce_range: as the uniform q8 (converters/web.py).
            quantize_dynamic(str(staged), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=False,
                             nodes_to_quantize=eight, op_types_to_quantize=["MatMul"],
                             use_external_data_format=model.ByteSize() > 1_800_000_000)
    else:
        save(model, out)
    counts = {level: sum(v == level for v in levels.values()) for level in BITS}
    return {"method": "per layer: onnxruntime MatMulNBitsQuantizer (nodes_to_exclude) for q4, quantize_dynamic "
                      "(nodes_to_quantize) for q8, the embedding table in MatMulNBits blocks looked up with Gather",
            "block_size": Q4_BLOCK, "layers": {**counts, "float": len(matmuls) + (gather is not None) - sum(counts.values())},
            "embedding": table or "float"}
