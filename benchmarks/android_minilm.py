"""Build time per precision and LiteRT latency for MiniLM (seq 128) and the digits CNN on the android target,
with LiteRT's own litert-benchmark p50 beside the interpreter's where the tool can run the file.

Run: .venv/bin/python benchmarks/android_minilm.py [--runs 50] [--threads 1]
The fp32 conversion is timed on its own (a fresh cache), then each precision's quantization + validation.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from build_times import latency_arguments, timed_builds

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ["fp16", "dynamic-int8", "int8", "int4"]


def measure(source: str, calibration: Path, eval_path: Path, tmp: Path, args) -> tuple[float, dict, dict]:
    import edge_pack
    from edge_pack.pipeline import BuildOptions

    options = BuildOptions(calibration=calibration)
    export_s, build_s = timed_builds(source, "android", PRECISIONS, tmp, options)
    out = tmp / "all"
    manifest = edge_pack.build(source, ["android"], ["fp32", *PRECISIONS], out, options=options)
    results = edge_pack.bench(out, eval_path=eval_path, runs=args.runs, threads=args.threads)
    return export_s, build_s, {"results": results, "rejected": manifest["rejected"]}


def report(title: str, export_s: float, build_s: dict, found: dict) -> None:
    print(f"\n{title}\ncold fp32 conversion + validation: {export_s:.1f} s (later builds reuse the cached file)")
    print(f"{'precision':<14}{'build s':>9}{'size MB':>9}{'quality':>9}{'cosine':>9}{'p50 ms':>9}{'tool p50':>10}")
    for row in found["results"]["rows"]:
        tool = row["metrics"].get("litert_benchmark_p50_ms")
        print(f"{row['precision']:<14}{build_s.get(row['precision'], 0):>9.1f}{row['size_mb']:>9.2f}"
              f"{row['quality']['value']:>9.3f}{row['metrics']['cosine_mean']:>9.4f}{row['latency_p50_ms']:>9.2f}"
              f"{'—' if tool is None else f'{tool:.2f}':>10}")
    for rejected in found["rejected"]:
        print(f"{rejected['precision']:<14}{rejected['status']}: {rejected['reason']}")
    reasons = {r["metrics"].get("litert_benchmark_error") for r in found["results"]["rows"]} - {None}
    for reason in reasons:
        print(f"litert-benchmark could not run: {reason}")


def main() -> None:
    args = latency_arguments(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["EDGE_PACK_CACHE"] = str(tmp / "cache")  # cold conversion, measured once
        demo = ROOT / "examples" / "demo" / "eval.jsonl"
        minilm = measure("demo", demo, demo, tmp / "minilm", args)
        digits_dir = ROOT / "examples" / "pytorch-entry-point"
        subprocess.run([sys.executable, "digits_cnn.py", str(tmp / "eval.npz"), str(tmp / "calibration.npz")],
                       cwd=digits_dir, check=True)
        sys.path.insert(0, str(digits_dir))
        digits = measure("digits_cnn:factory", tmp / "calibration.npz", tmp / "eval.npz", tmp / "digits", args)
    header = f"LiteRT (ai-edge-litert) interpreter, {args.threads} thread(s), {args.runs} runs"
    report(f"MiniLM-L6 (all-MiniLM-L6-v2), android target, seq 128, {header}; quality: centroid accuracy "
           "on examples/demo/eval.jsonl", *minilm)
    report(f"digits CNN, android target, NHWC, {header}; quality: accuracy on the 297 held-out digits", *digits)


if __name__ == "__main__":
    main()
