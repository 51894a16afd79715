"""The cascade's accuracy/cost curve: every threshold of a job's [cascade] on the half of the eval set it is
reported on — share escalated, accuracy of the routed answers, expected latency and cost per month — with
the picked threshold marked and each stage alone at the ends.

Run: .venv/bin/python benchmarks/cascade_curve.py [BUNDLE]
     BUNDLE: a folder `edge-pack bench` wrote with a [cascade] in its job (default: the digits cascade demo,
     examples/pytorch-entry-point/dist-cascade, benched first when it has no results yet)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "pytorch-entry-point"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", nargs="?", type=Path)
    parser.add_argument("--points", type=int, default=25, help="thresholds to print (evenly spaced; the picked "
                        "one and both ends always)")
    args = parser.parse_args()
    bundle = args.bundle or DEMO / "dist-cascade"
    if args.bundle is None and not (bundle / "results.json").is_file():
        edge_pack = Path(sys.executable).parent / "edge-pack"
        subprocess.run([sys.executable, "digits_cnn.py", "eval.npz"], cwd=DEMO, check=True)
        subprocess.run([str(edge_pack), "bench", "-c", "digits-cascade.toml"], cwd=DEMO, check=False,
                       stdout=subprocess.DEVNULL)
    results = json.loads((bundle / "results.json").read_text())
    cascades = [r for r in results["rows"] if r.get("cascade")]
    if not cascades:
        sys.exit(f"{bundle}/results.json has no cascade row: add [cascade] to the job and bench it")
    for row in cascades:
        found = row["cascade"]
        currency = (results["targets"][row["target"]].get("cost") or {}).get("currency", "")
        print(f"{row['target']}: cascade {row['precision']} — {found['text']}")
        print(f"verdict: {row['verdict']['status']} (SLA floor {found['target_accuracy']:.3f})\n")
        print(f"{'threshold':>9}  {'escalated':>9}  {'accuracy':>8}  {'latency ms':>10}  {'cost/month':>12}")
        curve = sorted(found["curve"], key=lambda p: p["escalated"])
        step = max(1, -(-len(curve) // args.points))
        # the picked threshold comes from the other half: its point here is the routing at that threshold
        shown = sorted([p for i, p in enumerate(curve) if i % step == 0 or i == len(curve) - 1] + [found["point"]],
                       key=lambda p: (p["escalated"], p["threshold"]))
        for point in shown:
            mark = "  ← picked (on the other half)" if point is found["point"] else ""
            latency = "—" if point["latency_ms"] is None else f"{point['latency_ms']:.2f}"
            cost = "—" if point["cost_per_month"] is None else f"{point['cost_per_month']:,.2f} {currency}"
            print(f"{point['threshold']:9.3f}  {point['escalated']:9.0%}  {point['accuracy']:8.3f}  {latency:>10}  "
                  f"{cost:>12}{mark}")
        print(f"\n{found['first']} alone: {found['first_alone']['accuracy']:.3f}; {found['fallback']} alone: "
              f"{found['fallback_alone']['accuracy']:.3f} (on the same {found['reported_on']} samples)\n")


if __name__ == "__main__":
    main()
