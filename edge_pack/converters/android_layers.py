"""The android target layer by layer: each torch module of the fp32 LiteRT graph (a Linear, a convolution,
a LayerNorm, an attention block's own ops, an activation...) at its own precision, made with
ai-edge-quantizer's own per-scope recipe entries: Quantizer.add_static_config / add_dynamic_config /
add_weight_only_config with a regex on the op's scope (its output tensor name, which litert-torch writes as
the torch module path the op came from; recipe_manager.get_quantization_configs matches it with
re.search, the latest matching entry winning). Ops not named stay float.

A layer is the innermost torch module an op's scope names: litert-torch fuses names ("A;;B;1"), and the
deepest module among the parts is the op's own (a key projection's output names the LayerNorm it reads,
itself and the query projection beside it).

Per precision, the layer's ops get what the uniform precision gives the whole model (converters/android.py):
- int8: static int8 weights and activations (calibrated; embedding tables int8 weight-only);
- int8-a16: static int8 weights with int16 activations (ai-edge-quantizer's a16w8, LiteRT's 16x8 kernels):
  still integer compute, for the ops whose int8 activations break a transformer (MiniLM's residual stream,
  LayerNorm and the projection writing into it); SQUARED_DIFFERENCE has no int16 config in the quantizer's
  policy and stays float;
- int4: 4-bit weights where ai-edge-quantizer's policy (default_policy.py, checked through
  algorithm_manager.check_op_quantization_config) allows them for the op type: blocks of 32 with dynamic range
  (FULLY_CONNECTED, EMBEDDING_LOOKUP: LiteRT's 4-bit kernels), else per channel weight-only, asymmetric (CONV_2D:
  dequantized to float at load; a zero point per channel keeps EfficientNet-Lite0's convolutions closer than
  symmetric scales do); int8 weight-only where it allows no 4 bits (DEPTHWISE_CONV_2D);
- dynamic-int8: int8 weights, activations quantized on the fly by the runtime;
- weight-only-int8: int8 weights per channel dequantized at load, float compute;
- fp16: float16 weights; fp32: float (no entry).
At the static levels an op reading or writing a tensor that calibration gave no range stays float (see
unranged()): Hugging Face's attention mask, whose finfo.min the calibrator ignores."""
from __future__ import annotations

import re
from collections import defaultdict
from functools import cache
from pathlib import Path

from ..contracts import Layer

LEVELS = ("int8", "int8-a16", "int4", "dynamic-int8", "weight-only-int8", "fp16", "fp32")
STATIC = ("int8", "int8-a16")  # calibrated activations


def _module(part: str) -> str:
    """A scope part without litert-torch's op counter (";3") and without edge-pack's own wrappers."""
    path = re.sub(r";\d*$", "", part)
    return "/".join(s.rsplit(".", 1)[-1] for s in path.split("/") if not s.startswith(("edge_pack.", "litert_torch.")))


def _owner(scope: str) -> str:
    parts = [_module(p) for p in scope.split(";;") if p]
    return max(parts, key=lambda p: p.count("/")) if parts else scope  # max keeps the first of the deepest


def _graph(path: Path):
    """(op type, name, scope, float weights) per op of the main graph: the name its weight tensor's or else its
    output's, the scope as the quantizer matches it (tfl_flatbuffer_utils.get_op_scope), weights the elements
    of its constant float inputs."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    model = tfl_flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    for op in graph.operators:
        kind = names[model.operatorCodes[op.opcodeIndex].builtinCode]
        name = graph.tensors[op.outputs[0]].name.decode()
        weights = 0
        for index in op.inputs:
            tensor = graph.tensors[index] if index >= 0 else None
            if tensor is not None and tensor.type == schema.TensorType.FLOAT32 and len(tensor.shape) >= 2 \
                    and model.buffers[tensor.buffer].data is not None:
                weights += int(np.prod(tensor.shape))
                # The weight's own name says whose it is where the output's does not (a convolution's fused
                # ReLU names its output, the graph's last op is named after the signature's output).
                name = tensor.name.decode() if "/" in tensor.name.decode() else name
        yield kind, name, tfl_flatbuffer_utils.get_op_scope(op, graph.tensors), weights


def modules(path: Path) -> dict[str, dict]:
    """Per layer (module path): its op scopes, and its float weight count per op type, in graph order."""
    found: dict[str, dict] = defaultdict(lambda: {"scopes": [], "weights": defaultdict(int)})
    for kind, name, scope, weights in _graph(path):
        entry = found[_owner(name)]
        entry["scopes"].append(scope)
        entry["weights"][kind] += weights
    return dict(found)


@cache
def four_bits(op: str) -> str | None:
    """How ai-edge-quantizer's policy lets an op type store 4-bit weights: "blockwise" (dynamic range, blocks
    of 32), "weight-only" (per channel, float compute), or None (no 4-bit config for it)."""
    from ai_edge_quantizer import algorithm_manager, qtyping

    tensor = qtyping.TensorQuantizationConfig
    tries = {"blockwise": qtyping.OpQuantizationConfig(
                 weight_tensor_config=tensor(num_bits=4, symmetric=True,
                                             granularity=qtyping.QuantGranularity.BLOCKWISE_32),
                 compute_precision=qtyping.ComputePrecision.INTEGER, explicit_dequantize=False),
             "weight-only": qtyping.OpQuantizationConfig(
                 weight_tensor_config=tensor(num_bits=4, symmetric=True),
                 compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)}
    for how, config in tries.items():
        try:
            algorithm_manager.check_op_quantization_config(algorithm_manager.AlgorithmName.MIN_MAX_UNIFORM_QUANT,
                                                           qtyping.TFLOperationName(op), config)
            return how
        except ValueError:
            continue
    return None


def _bits(level: str, op: str, nominal: float) -> float:
    """Bits a weight of `op` is stored in at `level`: int4 is 8 where the policy allows no 4 bits."""
    return 8 if level == "int4" and four_bits(op) is None else nominal


def layers(path: Path, bits: dict[str, float]) -> list[Layer]:
    """The layers of the fp32 .tflite at `path`, with their stored bytes as float and at each precision
    (`bits`: precision -> nominal bits per weight; estimates for ranking, the built file is measured). Layers
    without weights (an activation, a LayerNorm's ops) are listed only when a level quantizes activations
    (int8, int8-a16): at every other level they stay float whatever the mix says."""
    found = []
    for name, entry in modules(path).items():
        n = sum(entry["weights"].values())
        if not n and not set(STATIC) & set(bits):
            continue
        kind = name.rsplit("/", 1)[-1].split("_", 1)[0].lower()  # the torch module class: linear, layernorm...
        stored = {p: int(sum(w * _bits(p, op, b) for op, w in entry["weights"].items()) / 8) for p, b in bits.items()}
        found.append(Layer(name, kind, n, {"float": 4 * n, **stored}))
    return found


def _regex(scopes: list[str]) -> str:
    return "^(?:" + "|".join(re.escape(s) for s in scopes) + ")$"


def configure(quantizer, level: str, regex: str, ops_with_weights) -> None:
    """The recipe entries that put the ops matching `regex` (their weighted op types `ops_with_weights`) at
    `level`."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    ops, blocks = qtyping.TFLOperationName, qtyping.QuantGranularity.BLOCKWISE_32
    if level in STATIC:
        quantizer.add_static_config(regex=regex, operation_name=ops.ALL_SUPPORTED, weight_num_bits=8,
                                    activation_num_bits=16 if level == "int8-a16" else 8)
        quantizer.add_weight_only_config(regex=regex, operation_name=ops.EMBEDDING_LOOKUP, num_bits=8)
    elif level == "int4":  # weight-only int8 where no 4 bits: dynamic-range activations cost a CNN's depthwise convs
        quantizer.add_weight_only_config(regex=regex, operation_name=ops.ALL_SUPPORTED, num_bits=8)
        for op in ops_with_weights:
            if four_bits(op) == "blockwise":
                quantizer.add_dynamic_config(regex=regex, operation_name=ops(op), num_bits=4, granularity=blocks)
            elif four_bits(op) == "weight-only":  # asymmetric: the policy's weightonly_wi4_afp32 allows a zero point
                quantizer.update_quantization_recipe(regex, ops(op), qtyping.OpQuantizationConfig(
                    weight_tensor_config=qtyping.TensorQuantizationConfig(
                        num_bits=4, symmetric=False, granularity=qtyping.QuantGranularity.CHANNELWISE),
                    compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True))
    elif level == "dynamic-int8":
        quantizer.add_dynamic_config(regex=regex, operation_name=ops.ALL_SUPPORTED, num_bits=8)
    elif level == "weight-only-int8":
        quantizer.add_weight_only_config(regex=regex, operation_name=ops.ALL_SUPPORTED, num_bits=8)
    elif level == "fp16":
        quantizer.add_weight_only_config(regex=regex, operation_name=ops.ALL_SUPPORTED, num_bits=16,
                                         algorithm_key=AlgorithmName.FLOAT_CASTING)
    elif level != "fp32":
        raise ValueError(f"no per-layer recipe for precision {level!r} (known: {', '.join(LEVELS)})")


def calibrate(path: Path, signature: str, feeds: list[dict]) -> dict:
    """Ranges of every tensor of the fp32 graph, once (static int8 over all ops): each mix reuses them.
    Quantizer.calibrate keeps a moving average of the samples' minima and maxima (weight 0.95 on the past),
    which clips the outlier channels of a transformer's residual stream that sentences after the first reach;
    the calibrator's own min_max_update keeps each tensor's whole range (MiniLM with every op at int8:
    cosine 0.36 -> 0.53; benchmarks/android_int8_ops.py)."""
    from ai_edge_quantizer import calibrator, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    found = calibrator.Calibrator(str(path), num_threads=1, qsv_update_func=qsv_utils.min_max_update)
    found.calibrate({signature: feeds}, manager)
    return found.get_model_qsvs()


def unranged(path: Path, ranges: dict) -> list[tuple[str, str]]:
    """(scope, op type) of the ops that read or write a float tensor calibration gave no range (min == max):
    the calibrator ignores values beyond ±3e38 (naive_min_max_quantize.min_max_calibrate's valid_range), so
    the finfo.min a Hugging Face attention mask adds reads as [0, 0] and would quantize to zero, attending
    every padding token (MiniLM: cosine 0.68 with only the mask ops at int8, the rest float). Those ops stay
    float."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    model = tfl_flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

    def empty(index: int) -> bool:
        tensor = graph.tensors[index] if index >= 0 else None
        if tensor is None or tensor.type != schema.TensorType.FLOAT32 or model.buffers[tensor.buffer].data is not None:
            return False
        found = ranges.get(tensor.name.decode())
        return found is not None and bool(np.all(np.asarray(found["min"]) == np.asarray(found["max"])))

    return [(tfl_flatbuffer_utils.get_op_scope(op, graph.tensors), names[model.operatorCodes[op.opcodeIndex].builtinCode])
            for op in graph.operators if any(empty(i) for i in list(op.inputs) + list(op.outputs))]


def keep_unranged_float(quantizer, path: Path, ranges: dict) -> list[tuple[str, str]]:
    """Recipe entries (added last, so that they win) keeping the unranged() ops float, by scope and op type
    (an attention block's scale MUL shares its mask ADD's scope); returns them."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    found = sorted(set(unranged(path, ranges)))
    for scope, kind in found:
        quantizer.update_quantization_recipe(_regex([scope]), qtyping.TFLOperationName(kind),
                                             algorithm_key=AlgorithmName.NO_QUANTIZE)
    return found


def quantize_layers(path: Path, levels: dict[str, str], out: Path, ranges: dict | None) -> dict:
    """Write the fp32 .tflite at `path` to `out` with each named layer at its level; returns the recipe.
    `ranges`: calibrate()'s, needed when a layer is at int8 or int8-a16."""
    from ai_edge_quantizer import quantizer

    found = modules(path)
    unknown = sorted(set(levels) - set(found))
    if unknown or set(levels.values()) - set(LEVELS):
        raise ValueError(f"no such layer or level: {unknown or sorted(set(levels.values()) - set(LEVELS))}")
    q = quantizer.Quantizer(str(path))
    for name, level in levels.items():
        configure(q, level, _regex(found[name]["scopes"]), [op for op, n in found[name]["weights"].items() if n])
    static = any(level in STATIC for level in levels.values())
    kept = keep_unranged_float(q, path, ranges) if static else []
    if not q.get_quantization_recipe():  # every layer float: the fp32 graph itself
        out.write_bytes(path.read_bytes())
    else:
        result = q.quantize(ranges if static else None, enable_progress_report=False)
        out.write_bytes(bytes(result.quantized_model))
    counts = {level: sum(v == level for v in levels.values()) for level in LEVELS}
    eight = sorted({op for name, level in levels.items() if level == "int4"
                    for op, n in found[name]["weights"].items() if n and four_bits(op) is None})
    return {"method": "per layer: ai_edge_quantizer recipe entries with a regex on each torch module's op scopes",
            "layers": {**{k: v for k, v in counts.items() if v and k != "fp32"},
                       "float": len(found) - sum(counts.values()) + counts["fp32"]},
            **({"int4_kept_at_int8": eight} if eight else {}),  # no 4-bit config in the quantizer's policy
            **({"float_unranged_ops": len(kept)} if kept else {})}
