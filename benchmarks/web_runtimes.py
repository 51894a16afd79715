"""MiniLM on the web target, every precision on its three runtimes side by side: Transformers.js in headless
Chromium (onnxruntime-web, WASM), Transformers.js in Node (onnxruntime-node) and Python onnxruntime.

Run: .venv/bin/python benchmarks/web_runtimes.py [--runs 30] [--threads 1] [--seq-len 128] [-p q8 ...]
Needs the web runtimes (`make web-runtimes`, or `edge-pack setup web` + Node and Chromium).
The runtimes take turns per precision, so a busy machine slows them alike rather than one column.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

RUNTIMES = ("browser", "node", "ort")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("-p", "--precision", dest="precisions", action="append")
    args = parser.parse_args()

    import edge_pack
    from edge_pack.targets import get_target

    precisions = args.precisions or list(get_target("web").default_precisions)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "minilm"
        edge_pack.build("demo", ["web"], precisions, bundle)
        rows = {}
        for precision in precisions:
            for runtime in RUNTIMES:
                results = edge_pack.bench(bundle, precisions=[precision], runtime=runtime, runs=args.runs,
                                          warmup=args.warmup, threads=args.threads, seq_len=args.seq_len)
                rows[precision, runtime] = results["rows"][0]
    names = {r: next((row["runtime"] for (p, rt), row in rows.items() if rt == r and row.get("runtime")), r)
             for r in RUNTIMES}
    print(f"all-MiniLM-L6-v2, web target, seq {args.seq_len}, {args.threads} thread(s), {args.runs} runs after "
          f"{args.warmup} warm-up; latency p50 ms (load ms), cosine to the fp32 source")
    for runtime in RUNTIMES:
        print(f"  {runtime:<8} {names[runtime]}")
    print()
    print(f"{'precision':<10}{'size MB':>8}" + "".join(f"{r:>22}" for r in RUNTIMES) + f"{'cosine':>9}")
    for precision in precisions:
        cells = []
        for runtime in RUNTIMES:
            row = rows[precision, runtime]
            if row["error"]:
                cells.append(f"{'failed':>22}")
            else:
                cells.append(f"{row['latency_p50_ms']:>12.1f} ({row['load_ms']:>6.0f})")
        cosine = next((rows[precision, r]["metrics"]["cosine_mean"] for r in RUNTIMES if not rows[precision, r]["error"]),
                      float("nan"))
        size = rows[precision, "ort"]["size_mb"]
        print(f"{precision:<10}{size:>8.1f}" + "".join(cells) + f"{cosine:>9.4f}")
    for (precision, runtime), row in rows.items():
        if row["error"]:
            print(f"{precision} on {runtime}: {row['error']}")


if __name__ == "__main__":
    main()
