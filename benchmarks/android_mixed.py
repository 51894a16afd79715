"""Mixed precision on the android target (LiteRT), side by side with the uniform candidates of the same run:
- MiniLM (all-MiniLM-L6-v2, the demo model): full-integer int8 layers with the ones int8 activations break left
  float (the feature-extraction pair of targets/android.toml), beside uniform full-integer int8 and int8-a16
  (int16 activations);
- EfficientNet-Lite0 (the entry point benchmarks/efficientnet_lite0.py, the confident photo crops of ios_mixed.py):
  4-bit weights with the sensitive layers at weight-only int8, beside uniform fp16, weight-only-int8, dynamic-int8,
  int8 (full-integer, calibrated on 32 other confident crops) and int4 (which is dynamic-int8 with 4 bits only in
  the head: LiteRT has no 4-bit convolution kernel); fp32 too: bench compares an entry point's rows with it.

Run: .venv/bin/python benchmarks/android_mixed.py [--model minilm cnn] [--minilm-floor 0.98] [--cnn-floor 0.95]
     [--runs 10] [--budget 12]
A floor is the SLA's min_accuracy_ratio on what bench's verdict reads, which the search stops on too: MiniLM's
centroid accuracy on the labels of examples/demo/eval.jsonl (48 sentences, also its calibration) as a share of
fp32's; the CNN's top-1 agreement with fp32 on --images crops of the photos scikit-image, scikit-learn and
matplotlib bundle (its mix needs no calibration). "no-op promotions" counts promoted layers whose weights have
no 4-bit config (a depthwise convolution is weight-only int8 at both levels).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION_CROPS = 32  # confident crops after the eval ones, for the CNN's full-integer int8


def four_bit_share(path: Path) -> float:
    """Share of the file's weight elements stored at 4 bits."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    model = tfl_flatbuffer_utils.read_model(str(path))
    weights = [t for g in model.subgraphs for t in g.tensors
               if len(t.shape) >= 2 and model.buffers[t.buffer].data is not None]
    total = sum(int(np.prod(t.shape)) for t in weights)
    return sum(int(np.prod(t.shape)) for t in weights if t.type == schema.TensorType.INT4) / max(total, 1)


def no_op(fp32: Path, promoted: list[str]) -> int:
    """Promoted layers whose weighted ops have no 4-bit config: the same weight-only int8 at either level."""
    from edge_pack.converters.android_layers import four_bits, modules

    found = modules(fp32)
    weighted = [[op for op, n in found[name]["weights"].items() if n] for name in promoted]
    return sum(bool(ops) and all(four_bits(op) is None for op in ops) for ops in weighted)


def run(title: str, source: str, precisions: list[str], floor: float, calibration: Path, eval_path: Path,
        tmp: Path, args) -> None:
    import edge_pack
    from edge_pack.config import load_config
    from edge_pack.contracts import BuildOptions

    job = tmp / "edge-pack.toml"
    job.write_text(f"[sla]\nmin_accuracy_ratio = {floor}\n")
    options = BuildOptions(sla=load_config(job).sla, calibration=calibration, eval_path=eval_path,
                           target_options={"budget": args.budget})
    # The uniform candidates in a bundle of their own: built beside the mix, the search would weigh them by
    # their build-time validation (its first 8 inputs), where EfficientNet-Lite0's int4 passes and fails on 64.
    uniform = edge_pack.build(source, ["android"], precisions, tmp / "uniform", options=options)
    start = time.perf_counter()
    manifest = edge_pack.build(source, ["android"], ["fp32", "auto"], tmp / "bundle", options=options)
    build_s = time.perf_counter() - start
    target = manifest["targets"]["android"]
    sensitivity = target.get("sensitivity", {})
    mixed = next((a for a in manifest["artifacts"] if a["precision"].startswith("mixed")), None)
    print(f"\n{title}, android, --precision auto with min_accuracy_ratio {floor}: build of fp32 + auto {build_s:.0f} s ({len(sensitivity.get('layers', []))} layers' "
          f"sensitivity + {len(target.get('mixed', {}).get('builds', []))} search builds)")
    for rejected in uniform["rejected"] + manifest["rejected"]:
        print(f"not built: {rejected['precision']}: {rejected['reason'][:300]}")
    print(target.get("mixed", {}).get("statement", ""))
    builds = target.get("mixed", {}).get("builds", [])
    print(f"search builds (layers promoted, MB, quality, passed): "
          f"{[(b['promoted'], round(b['bytes'] / 1e6, 2), round(b['quality'], 4), b['passed']) for b in builds]}")
    if mixed:
        recipe = mixed["recipe"]
        print(f"promoted to {recipe['search']['high']}: {recipe['promoted'] or 'none'}")
        print(f"layers {recipe['layers']}; {recipe.get('int4_kept_at_int8') or ''}")
        if recipe["search"]["low"] == "int4":
            print(f"weights stored at 4 bits: {four_bit_share(tmp / 'bundle' / 'android' / recipe['file']):.1%}; "
                  f"no-op promotions: {no_op(tmp / 'bundle' / 'android' / 'model_fp32.tflite', recipe['promoted'])}")
    print(f"costliest per byte saved (drift = 1 - mean cosine, that layer alone at {sensitivity.get('precision')}):")
    by_name = {s["layer"]: s for s in sensitivity.get("layers", [])}
    for name in sensitivity.get("costliest_per_byte", []):
        s = by_name[name]
        print(f"  {name[-70:]:<70} drift {s['drift']:.5f}  saves {s['bytes_saved'] / 1e6:.3f} MB")
    rows = [row for bundle in ("uniform", "bundle") for row in edge_pack.bench(
        tmp / bundle, eval_path=eval_path, runs=args.runs, warmup=2, sla_path=job)["rows"]
        if bundle == "uniform" or row["precision"] != "fp32"]
    judged = next((r["quality"]["name"] for r in rows if r["quality"]), "quality")  # labeled accuracy if labels
    print(f"{rows[0]['runtime']}, {args.runs} runs, judged on {eval_path.name} by {judged} as a share of fp32's")
    print(f"{'precision':<14}{'size MB':>9}{'bits/w':>8}{'cosine':>9}{'cos min':>9}{'top-1 agr':>10}{'p50 ms':>9}"
          f"{'verdict on ' + judged:>32}")
    for row in rows:
        found, quality = row["metrics"], row["quality"] or {}
        verdict = f"{row['verdict']['status']} at {quality.get('value', float('nan')):.3f} ({quality.get('ratio') or 0:.1%})"
        print(f"{row['precision']:<14}{row['size_mb']:>9.2f}{row['bits_per_weight'] or 0:>8.2f}"
              f"{found.get('cosine_mean', float('nan')):>9.4f}{found.get('cosine_min', float('nan')):>9.4f}"
              f"{found.get('top1_agreement', float('nan')):>10.3f}{row['latency_p50_ms'] or float('nan'):>9.1f}"
              f"{verdict:>32}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["minilm", "cnn"], choices=["minilm", "cnn"])
    parser.add_argument("--minilm-floor", type=float, default=0.98)
    parser.add_argument("--cnn-floor", type=float, default=0.95)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--images", type=int, default=48, help="CNN eval crops (at most 152; 32 more calibrate int8)")
    parser.add_argument("--min-confidence", type=float, default=0.2,
                        help="CNN: keep crops where fp32's top-1 probability is at least this (0: every crop)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "minilm" in args.model:
            demo = ROOT / "examples" / "demo" / "eval.jsonl"
            (tmp / "minilm").mkdir()
            run("MiniLM-L6", "demo", ["fp32", "fp16", "dynamic-int8", "int8", "int8-a16", "int4"], args.minilm_floor,
                demo, demo, tmp / "minilm", args)
        if "cnn" in args.model:
            import numpy as np

            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from ios_mixed import confident_images

            (tmp / "cnn").mkdir()
            crops, confident = confident_images(args.images + CALIBRATION_CROPS, args.min_confidence)
            crops, calibration = crops[:args.images], crops[args.images:]  # full-integer int8's, not judged on
            print(f"EfficientNet-Lite0: {len(crops)} crops of the {confident} where fp32's top-1 probability is "
                  f"≥ {args.min_confidence:g}, {len(calibration)} others to calibrate int8")
            np.savez(tmp / "cnn" / "eval.npz", image=crops)
            np.savez(tmp / "cnn" / "calibration.npz", image=calibration)
            run("EfficientNet-Lite0", "efficientnet_lite0:factory",
                ["fp32", "fp16", "weight-only-int8", "dynamic-int8", "int8", "int4"], args.cnn_floor,
                tmp / "cnn" / "calibration.npz", tmp / "cnn" / "eval.npz", tmp / "cnn", args)

if __name__ == "__main__":
    main()
