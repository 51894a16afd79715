"""Why EfficientNet-Lite0 loses its top-1 at 4 bits on ios, measured fast: each conv/linear weight as Core ML
stores it (folded with its BatchNorm, as coremltools' conversion does), compressed by coremltools' own
functions (optimize/coreml/_quantization_passes.py: linear_quantize_weights.blockwise_compress and
palettize_weights.grouped_channelwise_compress, what OpLinearQuantizerConfig / OpPalettizerConfig call), put
back into the torch model and compared with fp32 on benchmarks/ios_mixed.py's photo crops. Seconds a
candidate instead of the MIL emulator's minutes; on linear int4 it agrees with the emulator (cosine 0.544
here, 0.536 there on the same 32 crops). A diagnosis, not a product path: edge-pack's ios converter and the
emulator stay the measure (benchmarks/ios_mixed.py).

Run: .venv/bin/python benchmarks/ios_cnn_4bit.py [--images 32] [--greedy-images 48] [--no-lut] [--lows int4,lut4]

The promotion sweep is run for each low side the [mixed] search could start from (--lows): linear int4 per block
of 32 (the int4 precision) and a k-means LUT per output channel (palettize4-channel), each with int8 per channel
as the high side, in the search's order (drift of that layer alone at the low side, per weight). Sizes are the
bytes Core ML stores for the compressed weights (values, plus fp16 scales or tables), estimated from the shapes:
a LUT of 16 fp16 values per output channel costs a depthwise 3x3 conv (9 weights a channel) more than int8.
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from efficientnet_lite0 import factory  # noqa: E402
from ios_mixed import _photo_paths, eval_images  # noqa: E402

THRESHOLD = 2048  # coremltools' weight_threshold: smaller weights stay fp16
CONFIDENT = 0.2  # ios_mixed.py's --min-confidence
LOWS = {"int4": ("int4", 32), "lut4": ("lut4", 1)}  # the int4 and palettize4-channel precisions' forms
HIGH = ("int8", 0)
_COMPRESSED: dict = {}  # (weight name, form) -> its decompressed values: k-means per channel takes minutes


def weights(model) -> list[tuple[str, torch.nn.Module, torch.nn.Module | None]]:
    """The compressed weights: (name, conv or linear, the BatchNorm folded into it)."""
    modules = list(model.named_modules())
    found = []
    for i, (name, module) in enumerate(modules):
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.weight.numel() > THRESHOLD:
            norm = next((b for _, b in modules[i + 1:i + 3] if isinstance(b, torch.nn.BatchNorm2d)), None)
            found.append((name, module, norm))
    return found


def _scale(module, norm) -> np.ndarray:
    if norm is None:
        return np.ones(module.weight.shape[0], np.float32)
    return (norm.weight / torch.sqrt(norm.running_var + norm.eps)).detach().numpy().astype(np.float32)


def compressed(weight: np.ndarray, form: tuple[str, int]) -> np.ndarray:
    """`weight` (output channels first) through coremltools' compression: ("int4"|"int8", block along the
    input axis, 0 = per channel) or ("lut4", output channels sharing a table, 0 = one table for the tensor)."""
    from coremltools.optimize.coreml._quantization_passes import linear_quantize_weights, palettize_weights

    kind, size = form
    if kind in ("int4", "int8"):
        block = math.gcd(size, weight.shape[1]) if size else 0  # ios_layers' fitted block
        params = linear_quantize_weights.blockwise_compress(weight, int(kind[3]), "LINEAR_SYMMETRIC", True,
                                                            [1, block] + [0] * (weight.ndim - 2))
        return linear_quantize_weights.decompress(params)
    group = math.gcd(size, weight.shape[0]) if size else 0
    return palettize_weights.decompress(palettize_weights.grouped_channelwise_compress(weight, "KMEANS", 4, 0, group))


def stored_bytes(shape: tuple, form: tuple[str, int]) -> float:
    """What Core ML stores for a weight of `shape` at `form`: the values at 4 or 8 bits, plus an fp16 scale per
    block (per output channel for int8) or a table of 16 fp16 values per group of output channels."""
    count, out = math.prod(shape), shape[0]
    kind, size = form
    if kind == "int8":
        return count + 2 * out
    if kind == "int4":
        blocks = shape[1] // math.gcd(size, shape[1]) if size else 1
        return count / 2 + 2 * out * blocks
    return count / 2 + 32 * out / (math.gcd(size, out) if size else out)


class Model:
    def __init__(self, images: np.ndarray):
        torch.set_num_threads(1)
        self.model, _ = factory()
        self.x = torch.from_numpy(images)
        with torch.no_grad():
            self.ref = self.model(self.x)
        self.weights = weights(self.model)
        self.total = sum(m.weight.numel() for _, m, _ in self.weights)

    def run(self, plan: dict[str, tuple[str, int]]) -> tuple[float, float]:
        """Top-1 agreement and mean cosine with fp32 with each weight of `plan` at its form."""
        model = copy.deepcopy(self.model)
        named = dict(model.named_modules())
        for name, module, norm in self.weights:
            if name in plan:
                scale = _scale(module, norm).reshape(-1, *[1] * (module.weight.ndim - 1))
                if (name, plan[name]) not in _COMPRESSED:
                    folded = module.weight.detach().numpy().astype(np.float32) * scale
                    _COMPRESSED[name, plan[name]] = torch.from_numpy(
                        (compressed(folded, plan[name]) / scale).astype(np.float32))
                named[name].weight.data = _COMPRESSED[name, plan[name]]
        with torch.no_grad():
            out = model(self.x)
        return ((out.argmax(1) == self.ref.argmax(1)).float().mean().item(),
                torch.nn.functional.cosine_similarity(out, self.ref).mean().item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--greedy-images", type=int, default=48, help="confident crops for the promotion sweep")
    parser.add_argument("--no-lut", action="store_true", help="skip the k-means forms (minutes)")
    parser.add_argument("--lows", default="int4,lut4", help="low sides of the promotion sweep (int4, lut4)")
    args = parser.parse_args()
    every = eval_images(8 * len(_photo_paths()))
    m = Model(every[:args.images])
    print(f"EfficientNet-Lite0, {len(m.weights)} weights ({m.total}), {args.images} crops, every weight at one form:")
    forms = [("int4", 32), ("int4", 16), ("int8", 0)] + ([] if args.no_lut else [("lut4", 0), ("lut4", 16), ("lut4", 1)])
    for form in forms:
        top1, cosine = m.run({n: form for n, _, _ in m.weights})
        print(f"  {form[0]} {'per channel' if not form[1] and form[0] == 'int8' else form[1] or 'per tensor'}: "
              f"top-1 {top1:.3f} cosine {cosine:.4f}", flush=True)

    everything = Model(every)
    confident = (torch.softmax(everything.ref, 1).max(1).values >= CONFIDENT).numpy()
    int8 = {n: ("int8", 0) for n, _, _ in everything.weights}
    print(f"int8 per channel on all {len(every)} crops: top-1 {everything.run(int8)[0]:.3f}; "
          f"{confident.sum()} crops have fp32 top-1 probability >= {CONFIDENT}")
    g = Model(every[confident][:args.greedy_images])
    size = {n: mod.weight.numel() for n, mod, _ in g.weights}
    shape = {n: tuple(mod.weight.shape) for n, mod, _ in g.weights}
    mb = lambda plan: sum(stored_bytes(shape[n], f) for n, f in plan.items()) / 1e6  # noqa: E731
    print(f"{len(g.x)} confident crops: int8 top-1 {g.run(int8)[0]:.3f}, {mb(int8):.2f} MB of compressed weights")
    for low_name in args.lows.split(","):
        low = LOWS[low_name]
        drift = {n: 1 - g.run({n: low})[1] for n in size}
        order = sorted(drift, key=lambda n: -drift[n] / size[n])  # the search's order: drift per weight promoted
        print(f"promoting to int8 (per channel) in order of drift per weight, the rest {low_name} "
              f"({'per block of 32' if low_name == 'int4' else 'a LUT per output channel'}):")
        for k in range(0, len(order) + 1, 2):
            plan = {n: HIGH if n in order[:k] else low for n in size}
            top1, cosine = g.run(plan)
            four = sum(v for n, v in size.items() if plan[n] == low) / g.total
            print(f"  {k:>2} promoted: {four:.1%} of weights at 4 bits, {mb(plan):.2f} MB, top-1 {top1:.3f} "
                  f"cosine {cosine:.4f}", flush=True)

if __name__ == "__main__":
    main()
