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


def layers(model, weights: dict[str, str], precisions: dict) -> list[Layer]:
    """The weight consts `weights` (op name -> kind, from ios.select_weights) with their stored bytes as
    fp16 and at each precision (`precisions`: name -> targets.Precision), estimated from the weight's shape."""
    found = _weights(model, weights)
    sizes = {name: int(np.prod(shape)) for name, (shape, _) in found.items()}
    return [Layer(name, kind, sizes[name],
                  {"float": 2 * sizes[name],
                   **{p: stored_bytes(spec.bits, spec.settings["compress"], *found[name]) for p, spec in precisions.items()}})
            for name, kind in weights.items()]


def stored_bytes(bits: float, compress: dict, shape: tuple, axes: tuple) -> int:
    """A weight's bytes compressed by `compress`: its values at `bits`, plus the fp16 scales or look-up tables
    stored beside them. The tables matter: a 4-bit LUT per output channel (16 fp16 values) of a depthwise conv's
    25 weights a channel is larger than the weights themselves, and larger than int8 per channel."""
    recipe = _fitted(dict(compress), shape, axes)
    size, output_axis = int(np.prod(shape)), axes[1]
    channels = int(shape[output_axis]) if output_axis is not None else 1
    if recipe["method"] == "palettize":
        tables = max(channels // int(recipe["group_size"]), 1) if recipe.get("granularity") == "per_grouped_channel" else 1
        side = tables * 2 ** int(recipe["nbits"])
    elif recipe.get("granularity") == "per_block":
        side = size // int(recipe["block_size"])
    else:
        side = channels if recipe.get("granularity") == "per_channel" else 1
    return int(size * bits) // 8 + 2 * side


def compress_layers(model, levels: dict[str, str], settings: dict[str, dict], threshold: int):
    """`model` with each named const compressed by its level's compress recipe; returns (model, counts)."""
    import coremltools.optimize.coreml as cto

    found = _weights(model, levels)
    by_method: dict[str, dict] = {}
    for name, level in levels.items():
        recipe = _fitted(dict(settings[level]["compress"]), *found[name])
        method = recipe.pop("method")
        make = cto.OpLinearQuantizerConfig if method == "linear" else cto.OpPalettizerConfig
        by_method.setdefault(method, {})[name] = make(**recipe, weight_threshold=threshold)
    for method, configs in sorted(by_method.items()):
        compress = cto.linear_quantize_weights if method == "linear" else cto.palettize_weights
        model = compress(model, config=cto.OptimizationConfig(op_name_configs=configs))
    counts = {level: sum(v == level for v in levels.values()) for level in settings}
    return model, counts


def _fitted(recipe: dict, shape: tuple, axes: tuple) -> dict:
    """The recipe with its block or group fitted to this weight. coremltools skips, leaving it fp16, a weight
    whose axis is not a multiple of the block (per_block, along the input axis: _config.py "the op will be
    skipped") or of the group (per_grouped_channel, along the output axis: _quantization_passes.py "Can't
    perform palettization" is only a warning). EfficientNet-Lite0: the depthwise convs (1 input channel),
    the 40/80/112-channel inputs (13 % of its weights) and the 24/40-channel and 1000-class outputs. The
    largest block or group that divides the axis (at most the recipe's) keeps such a weight compressed."""
    input_axis, output_axis = axes  # the ones coremltools picks for this weight's op
    if recipe.get("granularity") == "per_block" and input_axis is not None and len(shape) >= 2:
        recipe["block_size"] = math.gcd(int(recipe["block_size"]), int(shape[input_axis]))
    if recipe.get("granularity") == "per_grouped_channel" and output_axis is not None:
        recipe["group_size"] = math.gcd(int(recipe["group_size"]), int(shape[output_axis]))
    return recipe


def _weights(model, names) -> dict[str, tuple]:
    """Each named const's shape and its (input, output) channel axes as coremltools' compression picks them
    (optimize._utils.select_input_output_channel_axis: 1 and 0 for conv and linear, by transpose for matmul)."""
    from coremltools.models.utils import _apply_graph_pass
    from coremltools.optimize._utils import select_input_output_channel_axis

    program = _apply_graph_pass(model, [], return_pymil_prog=True)
    return {op.name: (tuple(op.outputs[0].shape), select_input_output_channel_axis(op))
            for op in program.functions["main"].operations if op.name in names}
