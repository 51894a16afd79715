"""Build time, package size and fidelity per ios precision for MiniLM (all-MiniLM-L6-v2).

Run: .venv/bin/python benchmarks/ios_minilm.py [--min-ios 18] [--fp32]
Fidelity is measured by the MIL emulator (Linux has no Core ML): cosine of the mean-pooled embedding to the
fp32 PyTorch source on the built-in sentences, in the program's own float types (or fp32 math with --fp32).
No latency is printed: an emulator's timings are not an iPhone's; on a Mac, `edge-pack bench` measures them.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--min-ios", type=int, default=18, choices=(16, 17, 18))
    parser.add_argument("--fp32", action="store_true", help="emulate with fp32 math")
    args = parser.parse_args()
    import edge_pack
    from edge_pack.pipeline import BuildOptions
    from edge_pack.targets import get_target

    target = get_target("ios")
    precisions = [p for p, spec in target.precisions.items() if spec.settings.get("min_ios", 16) <= args.min_ios]
    options = BuildOptions(target_options={"min_ios": args.min_ios})
    with tempfile.TemporaryDirectory() as tmp:
        build_s = {}
        for precision in precisions:
            start = time.perf_counter()
            edge_pack.build("demo", ["ios"], [precision], Path(tmp) / precision, options=options)
            build_s[precision] = time.perf_counter() - start
        out = Path(tmp) / "all"
        edge_pack.build("demo", ["ios"], precisions, out, options=options)
        results = edge_pack.bench(out, runs=1, runner_options={"fp32": args.fp32})
    print(f"MiniLM-L6 (all-MiniLM-L6-v2), ios target, iOS {args.min_ios}+, fidelity on the MIL emulator "
          f"({'fp32 math' if args.fp32 else 'program float types'}), built-in sentences")
    print(f"{'precision':<12}{'build s':>9}{'size MB':>9}{'cos mean':>10}{'cos min':>9}{'retrieval':>10}")
    for row in results["rows"]:
        found = row["metrics"]
        print(f"{row['precision']:<12}{build_s[row['precision']]:>9.1f}{row['size_mb']:>9.1f}"
              f"{found['cosine_mean']:>10.4f}{found['cosine_min']:>9.4f}{found.get('retrieval_agreement', 0):>10.2f}")


if __name__ == "__main__":
    main()
