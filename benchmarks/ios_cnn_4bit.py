"""Why EfficientNet-Lite0 loses its top-1 at 4 bits on ios, measured fast: each conv/linear weight as Core ML
stores it (folded with its BatchNorm, as coremltools' conversion does), compressed by coremltools' own
functions (optimize/coreml/_quantization_passes.py: linear_quantize_weights.blockwise_compress and
palettize_weights.grouped_channelwise_compress, what OpLinearQuantizerConfig / OpPalettizerConfig call), put
back into the torch model and compared with fp32 on benchmarks/ios_mixed.py's photo crops. Seconds a
candidate instead of the MIL emulator's minutes; on linear int4 it agrees with the emulator (cosine 0.544
here, 0.536 there on the same 32 crops). A diagnosis, not a product path: edge-pack's ios converter and the
emulator stay the measure (benchmarks/ios_mixed.py).

Run: .venv/bin/python benchmarks/ios_cnn_4bit.py [--images 32] [--greedy-images 48] [--no-lut]
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
                folded = module.weight.detach().numpy().astype(np.float32) * scale
                named[name].weight.data = torch.from_numpy((compressed(folded, plan[name]) / scale).astype(np.float32))
        with torch.no_grad():
            out = model(self.x)
        return ((out.argmax(1) == self.ref.argmax(1)).float().mean().item(),
                torch.nn.functional.cosine_similarity(out, self.ref).mean().item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--greedy-images", type=int, default=48, help="confident crops for the promotion sweep")
    parser.add_argument("--no-lut", action="store_true", help="skip the k-means forms (minutes)")
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
    low = ("int4", 32)
    drift = {n: 1 - g.run({n: low})[1] for n, _, _ in g.weights}
    size = {n: mod.weight.numel() for n, mod, _ in g.weights}
    order = sorted(drift, key=lambda n: -drift[n] / size[n])  # the search's order: drift per byte promoted
    print(f"{len(g.x)} confident crops: int8 top-1 {g.run(int8)[0]:.3f}; promoting to int8 (per channel) in "
          f"order of drift per weight, the rest int4 per block of 32:")
    for k in range(0, len(order) + 1, 2):
        promoted = set(order[:k])
        top1, cosine = g.run({n: ("int8", 0) if n in promoted else low for n in size})
        four = sum(v for n, v in size.items() if n not in promoted) / g.total
        print(f"  {k:>2} promoted: {four:.1%} of weights at 4 bits, top-1 {top1:.3f} cosine {cosine:.4f}", flush=True)


if __name__ == "__main__":
    main()
