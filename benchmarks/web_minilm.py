"""Build time per precision and onnxruntime latency for MiniLM on the web target.

Run: .venv/bin/python benchmarks/web_minilm.py [--runs 50] [--threads 1]
The fp32 ONNX export is timed on its own (a fresh cache), then each precision's conversion + validation.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from build_times import latency_arguments, timed_builds


def main() -> None:
    args = latency_arguments(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGE_PACK_CACHE"] = str(Path(tmp) / "cache")  # cold export, measured once
        import edge_pack
        from edge_pack.targets import get_target

        precisions = list(get_target("web").default_precisions)
        export_s, build_s = timed_builds("demo", "web", precisions, Path(tmp))
        out = Path(tmp) / "all"
        edge_pack.build("demo", ["web"], precisions, out)
        results = edge_pack.bench(out, runs=args.runs, threads=args.threads)
    print(f"MiniLM-L6 (all-MiniLM-L6-v2), web target, onnxruntime, {args.threads} thread(s), seq 128, {args.runs} runs")
    print(f"cold fp32 export + validation: {export_s:.1f} s (later builds reuse the cached export)\n")
    print(f"{'precision':<10}{'build s':>9}{'size MB':>9}{'cosine':>9}{'load ms':>9}{'p50 ms':>9}{'p90 ms':>9}")
    for row in results["rows"]:
        print(f"{row['precision']:<10}{build_s[row['precision']]:>9.1f}{row['size_mb']:>9.1f}"
              f"{row['metrics']['cosine_mean']:>9.4f}{row['load_ms']:>9.0f}{row['latency_p50_ms']:>9.1f}"
              f"{row['latency_p90_ms']:>9.1f}")


if __name__ == "__main__":
    main()
