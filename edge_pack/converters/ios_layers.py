"""The ios target layer by layer: each weight const of the converted ML program (the weights of linear, conv
and matmul ops, by op name) at its own precision, with coremltools' own per-op control:
OptimizationConfig(op_name_configs={name: OpLinearQuantizerConfig | OpPalettizerConfig}) applied by
linear_quantize_weights / palettize_weights (coremltools/optimize/coreml/_config.py: "op_name_configs ...
configure individual ops by name"). Each precision's config is its compress table in targets/ios.toml; consts
not named stay fp16."""
from __future__ import annotations

import math

import numpy as np

from ..contracts import Layer


def layers(model, weights: dict[str, str], bits: dict[str, int]) -> list[Layer]:
    """The weight consts `weights` (op name -> kind, from ios.select_weights) with their stored bytes as
    fp16 and at each precision (`bits`: precision -> its declared bits per weight), estimated from the weight count."""
    sizes = {name: int(np.prod(shape)) for name, shape in _shapes(model, weights).items()}
    return [Layer(name, kind, sizes[name], {"float": 2 * sizes[name],
                                            **{p: sizes[name] * b // 8 for p, b in bits.items()}})
            for name, kind in weights.items()]


def compress_layers(model, levels: dict[str, str], settings: dict[str, dict], threshold: int):
    """`model` with each named const compressed by its level's compress recipe; returns (model, counts)."""
    import coremltools.optimize.coreml as cto

    shapes = _shapes(model, levels)
    by_method: dict[str, dict] = {}
    for name, level in levels.items():
        recipe = dict(settings[level]["compress"])
        method = recipe.pop("method")
        if recipe.get("granularity") == "per_block" and len(shapes[name]) >= 2:
            # coremltools skips, leaving it fp16, a weight whose input axis (1 for conv and linear weights) is
            # not a multiple of block_size (_config.py: "the op will be skipped"): EfficientNet-Lite0's
            # depthwise convs (1 input channel) and its 40/80/112-channel inputs, 13 % of its weights. The
            # largest block that divides the axis (at most the recipe's) keeps such a weight at 4 bits.
            recipe["block_size"] = math.gcd(int(recipe["block_size"]), int(shapes[name][1]))
        make = cto.OpLinearQuantizerConfig if method == "linear" else cto.OpPalettizerConfig
        by_method.setdefault(method, {})[name] = make(**recipe, weight_threshold=threshold)
    for method, configs in sorted(by_method.items()):
        compress = cto.linear_quantize_weights if method == "linear" else cto.palettize_weights
        model = compress(model, config=cto.OptimizationConfig(op_name_configs=configs))
    counts = {level: sum(v == level for v in levels.values()) for level in settings}
    return model, counts


def _shapes(model, names) -> dict[str, tuple]:
    from coremltools.models.utils import _apply_graph_pass

    program = _apply_graph_pass(model, [], return_pymil_prog=True)
    return {op.name: tuple(op.outputs[0].shape) for op in program.functions["main"].operations if op.name in names}
