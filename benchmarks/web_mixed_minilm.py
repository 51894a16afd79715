"""Mixed precision on the web target: MiniLM (all-MiniLM-L6-v2, the demo model) with --precision auto beside
the uniform q8 and q4, the same run, measured on onnxruntime and in Chromium (Transformers.js).

Run: .venv/bin/python benchmarks/web_mixed_minilm.py [--floor 0.96] [--runs 20] [--runtime ort browser]
                                                   [--latency-vs-q8 1.05]
The floor is the SLA's min_accuracy_ratio: on label-free agreement, mean cosine to fp32. --latency-vs-q8 R
first times uniform q8 on onnxruntime (same machine, same run) and gives the SLA max_latency_ms = R x its
p50, so the search must find a mix no slower than q8 (it times every build it tries).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--floor", type=float, default=0.96)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--runtime", nargs="+", default=["ort", "browser"])
    parser.add_argument("--latency-vs-q8", type=float, default=None, metavar="R")
    args = parser.parse_args()
    import edge_pack
    from edge_pack.config import load_config
    from edge_pack.contracts import BuildOptions

    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "edge-pack.toml"
        job.write_text(f"[sla]\nmin_accuracy_ratio = {args.floor}\n")
        if args.latency_vs_q8 is not None:
            edge_pack.build("demo", ["web"], ["q8"], Path(tmp) / "q8")
            q8 = edge_pack.bench(Path(tmp) / "q8", runs=args.runs, warmup=3, runtime="ort")["rows"][0]
            limit = args.latency_vs_q8 * q8["latency_p50_ms"]
            print(f"uniform q8 on onnxruntime: p50 {q8['latency_p50_ms']:.1f} ms -> max_latency_ms {limit:.1f}")
            job.write_text(job.read_text() + f"max_latency_ms = {limit:.1f}\n")
        sla = load_config(job).sla
        start = time.perf_counter()
        manifest = edge_pack.build("demo", ["web"], ["q8", "q4", "auto"], Path(tmp) / "bundle",
                                   options=BuildOptions(sla=sla))
        build_s = time.perf_counter() - start
        for rejected in manifest["rejected"]:
            print(f"not built: {rejected['precision']}: {rejected['reason']}")
        mixed = next((a for a in manifest["artifacts"] if a["precision"].startswith("mixed")), None)
        sensitivity = manifest["targets"]["web"].get("sensitivity", {})
        print(f"MiniLM-L6, web target, --precision auto with min_accuracy_ratio {args.floor}: build of q8 + q4 + auto "
              f"{build_s:.0f} s ({len(sensitivity.get('layers', []))} layers' sensitivity + "
              f"{len(mixed['recipe']['search']['builds']) if mixed else 0} search builds)")
        print(manifest["targets"]["web"].get("mixed", {}).get("statement", ""))
        if mixed:
            print(f"promoted to q8: {mixed['recipe']['promoted'] or 'none'}; layers {mixed['recipe']['layers']}")
        print("costliest per byte saved (drift = 1 - mean cosine, that layer alone at q4):")
        by_name = {s["layer"]: s for s in sensitivity.get("layers", [])}
        for name in sensitivity.get("costliest_per_byte", []):
            s = by_name[name]
            print(f"  {name:<50} drift {s['drift']:.5f}  saves {s['bytes_saved'] / 1e6:.2f} MB  "
                  f"{s['drift_per_mb']:.5f}/MB")
        for runtime in args.runtime:
            results = edge_pack.bench(Path(tmp) / "bundle", runs=args.runs, warmup=3, runtime=runtime, sla_path=job)
            print(f"\n{results['rows'][0]['runtime']}, {args.runs} runs")
            print(f"{'precision':<11}{'size MB':>9}{'bits/w':>8}{'cosine':>9}{'cos min':>9}{'p50 ms':>9}  verdict")
            for row in results["rows"]:
                found = row["metrics"]
                p50 = row["latency_p50_ms"]
                print(f"{row['precision']:<11}{row['size_mb']:>9.1f}{row['bits_per_weight'] or 0:>8.2f}"
                      f"{found.get('cosine_mean', float('nan')):>9.4f}{found.get('cosine_min', float('nan')):>9.4f}"
                      f"{p50 if p50 is not None else float('nan'):>9.1f}  {row['verdict']['status']}")


if __name__ == "__main__":
    main()
