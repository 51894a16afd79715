"""llama.cpp figures for the pi target: every precision of a decoder (the tests' tiny Llama, or your own
Hugging Face folder) with prompt/generation tokens/s, perplexity and KL divergence, and MiniLM's
embedding latency and cosine, for 1..N threads.

Run: .venv/bin/python benchmarks/pi_llama.py [--model HF_FOLDER --eval TEXT] [--threads 1 2] [--runs 10]
     [--device ssh://pi@raspberrypi.local]   # the same measurements on a board
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PRECISIONS = ["f32", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="a decoder's HF folder (default: the tests' tiny Llama)")
    parser.add_argument("--eval", type=Path, help="a text to score the decoder on")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--device")
    args = parser.parse_args()
    if args.model is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        import models

        args.model = models.tiny_llama()
        args.eval = args.eval or args.model.parent / "eval.txt"
    import edge_pack

    with tempfile.TemporaryDirectory() as tmp:
        for name, source, eval_path in (("decoder", str(args.model), args.eval), ("MiniLM", "demo", None)):
            out = Path(tmp) / name
            edge_pack.build(source, ["pi"], PRECISIONS, out)
            for threads in args.threads:
                results = edge_pack.bench(out, runs=args.runs, threads=threads, eval_path=eval_path, device=args.device)
                host = results["rows"][0]["host"]
                print(f"\n{name} on {host.get('device_model') or host.get('cpu')}, llama.cpp, {threads} thread(s), "
                      f"{args.runs} runs, inputs: {results['targets']['pi']['eval']}")
                if name == "decoder":
                    print(f"{'precision':<9}{'MB':>7}{'bpw':>7}{'ppl':>9}{'KL':>9}{'top-1':>7}{'pp t/s':>9}{'tg t/s':>9}"
                          f"{'Pi 5 est':>9}")
                    for row in results["rows"]:
                        m = row["metrics"]
                        print(f"{row['precision']:<9}{row['size_mb']:>7.2f}{row['bits'] :>7.2f}{m['perplexity']:>9.2f}"
                              f"{m['kl_divergence']:>9.5f}{m['same_top1']:>7.3f}{m['pp_tokens_per_s']:>9.0f}"
                              f"{m['tg_tokens_per_s']:>9.0f}{row['estimates']['pi5']['tg_tokens_per_s']:>9.0f}")
                else:
                    print(f"{'precision':<9}{'MB':>7}{'cosine':>8}{'load ms':>9}{'p50 ms':>8}{'p90 ms':>8}")
                    for row in results["rows"]:
                        print(f"{row['precision']:<9}{row['size_mb']:>7.1f}{row['metrics']['cosine_mean']:>8.4f}"
                              f"{row['load_ms']:>9.0f}{row['latency_p50_ms']:>8.1f}{row['latency_p90_ms']:>8.1f}")


if __name__ == "__main__":
    main()
