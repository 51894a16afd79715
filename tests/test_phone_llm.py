"""Decoders on the phone targets, on the tiny Llama of tests/models.py, against the fp32 torch source:
LiteRT's prefill/decode signatures over a KV cache (litert-torch's generative converter, run by the LiteRT
interpreter), and the iOS 18 Core ML program with the KV cache as state (run by the MIL emulator, which
executes the program itself: Core ML cannot run on Linux). One conversion per precision, cached across runs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_pack import decoder_check
from edge_pack.errors import UserError
from edge_pack.runners import RunOptions
from edge_pack.weight_bits import mlpackage_bits, tflite_bits

pytest.importorskip("litert_torch", reason="litert-torch is not installed (pip install 'edge-pack[android]')")

from edge_pack.converters import coreml_decoder, litert_decoder  # noqa: E402
from edge_pack.runners import coreml_decoder as coreml_runner  # noqa: E402
from edge_pack.runners import litert_decoder as litert_runner  # noqa: E402

NEW_TOKENS = 16
PREFILL = 16  # shorter than the prompts, so prefill runs in chunks


# The tiny model is barely trained: greedy decoding soon repeats indentation, but these prompts start
# differently (a newline, a dot, spaces), and the logits themselves are compared at every position.
PROMPTS = ["class Parser:\n    def __init__(self, name", "    for item in self.items:\n        if item",
           "import os\nimport sys\nimport "]


@pytest.fixture(scope="module")
def reference(tiny_llama):
    """The torch model, the prompts, their greedy continuations, and a longer held-out sequence whose
    logits are compared position by position (through prefill chunks, then decode steps)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    text = (tiny_llama.parent / "eval.txt").read_text()
    sequence = tokenizer(text[:4000], add_special_tokens=False)["input_ids"][900:948]
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    model = decoder_check.load_torch(tiny_llama)
    return {"model": model, "prompts": prompts, "sequence": sequence,
            "greedy": [decoder_check.torch_greedy(model, p, NEW_TOKENS) for p in prompts],
            "logits": decoder_check.torch_logits(model, sequence)}


def _asks(prompts):
    return [{"id": str(i), "prompt": p, "max_new_tokens": NEW_TOKENS, "stop": []} for i, p in enumerate(prompts)]


@pytest.fixture(scope="module")
def android(tiny_llama, reference):
    """Each precision converted once, then run once: its answers and its cache-path logits."""
    found = {}
    for precision in ("fp32", "weight-only-int8", "dynamic-int8"):
        tflite = litert_decoder.convert(tiny_llama, precision, prefill_len=PREFILL, kv_len=128)
        result = litert_runner.run([tflite], [{"input_ids": np.array([reference["sequence"]])}],
                                   {"input_ids": np.array([reference["prompts"][0]])}, RunOptions(),
                                   asks=_asks(reference["prompts"]))
        found[precision] = {"file": tflite, "result": result}
    return found


def test_android_fp32_matches_torch_through_the_cache(android, reference):
    result = android["fp32"]["result"]
    check = decoder_check.agreement(reference["logits"], result.outputs[0]["logits"][0])
    assert check.max_abs < 1e-3, check
    tokens = [a["tokens"] for a in result.answers]
    assert decoder_check.same_sequence_rate(reference["greedy"], tokens, NEW_TOKENS) == 1.0, tokens


def test_android_dynamic_int8_is_smaller_and_close(android, reference):
    fp32, int8 = android["fp32"], android["dynamic-int8"]
    assert int8["file"].stat().st_size < 0.4 * fp32["file"].stat().st_size
    check = decoder_check.agreement(reference["logits"], int8["result"].outputs[0]["logits"][0])
    assert check.same_top1 >= 0.9 and check.cosine > 0.99, check
    metrics = int8["result"].metrics
    assert metrics["prefill_len"] == PREFILL and metrics["kv_len"] == 128
    assert metrics["decode_tokens_per_s"] > 0 and metrics["prefill_tokens_per_s"] > 0
    answer = int8["result"].answers[0]
    assert len(answer["tokens"]) == NEW_TOKENS and answer["first_token_ms"] > 0
    assert all(lp <= 0 for lp in answer["logprobs"])


def test_android_weight_only_int8_keeps_closer_to_torch_than_dynamic(android, reference):
    """int8 weights with float activations: the 8-bit recipe that holds on SmolLM2 (README); on the tiny
    Llama too it stays at least as close to torch's logits as dynamic-int8, which also rounds activations."""
    checks = {p: decoder_check.agreement(reference["logits"], android[p]["result"].outputs[0]["logits"][0])
              for p in ("weight-only-int8", "dynamic-int8")}
    weight_only = checks["weight-only-int8"]
    assert weight_only.same_top1 >= 0.95 and weight_only.cosine > 0.999, weight_only
    assert weight_only.max_abs <= checks["dynamic-int8"].max_abs, checks
    assert android["weight-only-int8"]["file"].stat().st_size < 0.4 * android["fp32"]["file"].stat().st_size


def test_android_answers_stop_ids_and_continuations(android, reference):
    """A stop id ends the answer (and is not returned); a continuation's log-likelihood is the sum of its
    tokens' log-probs given the prompt, as torch computes it on the whole sequence."""
    prompt, greedy = reference["prompts"][1], reference["greedy"][1]
    continuation = reference["sequence"][:6]
    ask = {"id": "x", "prompt": prompt, "max_new_tokens": NEW_TOKENS, "stop": [greedy[1]],
           "continuations": [continuation]}
    answer = litert_runner.run([android["fp32"]["file"]], [], None, RunOptions(), asks=[ask]).answers[0]
    assert answer["tokens"] == greedy[:1]
    logits = decoder_check.torch_logits(reference["model"], prompt + continuation)[len(prompt) - 1:-1]
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    expected = float(sum(row[t] for row, t in zip(logp, continuation)))
    assert answer["continuation_logliks"][0] == pytest.approx(expected, abs=1e-3)


def test_android_litertlm_bundle_holds_the_tokenizer(android, tiny_llama, tmp_path):
    bundle = litert_decoder.litertlm_bundle(android["dynamic-int8"]["file"], tiny_llama, tmp_path / "model.litertlm")
    assert bundle.stat().st_size > android["dynamic-int8"]["file"].stat().st_size
    assert bundle_sections(bundle) >= {"TFLiteModel", "HF_Tokenizer_Zlib"}


@pytest.fixture(scope="module")
def ios(tiny_llama, reference):
    found = {}
    for precision in ("fp16", "int8", "int8-block32"):
        package = coreml_decoder.convert(tiny_llama, precision, prefill_len=PREFILL, kv_len=128)
        result = coreml_runner.run([package], [{"input_ids": np.array([reference["sequence"]])}], None,
                                   RunOptions(), asks=_asks(reference["prompts"]))
        found[precision] = {"file": package, "result": result}
    return found


def test_ios_fp16_program_matches_torch_through_its_state(ios, reference):
    result = ios["fp16"]["result"]
    check = decoder_check.agreement(reference["logits"], result.outputs[0]["logits"][0])
    assert check.same_top1 == 1.0 and check.cosine > 0.9999, check
    tokens = [a["tokens"] for a in result.answers]
    assert decoder_check.same_sequence_rate(reference["greedy"], tokens, NEW_TOKENS) == 1.0, tokens
    assert result.latency_note == "emulated — no device latency" and result.obtained["outputs"] == "emulated"
    assert result.answers[0]["first_token_ms"] is None  # an emulator's timings are not a phone's


def test_ios_int8_is_smaller_and_close(ios, reference):
    fp16, int8 = (coreml_decoder.package_size(ios[p]["file"]) for p in ("fp16", "int8"))
    assert int8 < 0.6 * fp16, (int8, fp16)
    check = decoder_check.agreement(reference["logits"], ios["int8"]["result"].outputs[0]["logits"][0])
    assert check.same_top1 >= 0.9 and check.cosine > 0.99, check


def test_ios_int8_in_blocks_of_32_is_stored_so_and_close(ios, reference):
    """int8 with a scale per block of 32 (iOS 18's blockwise op), the decoders' 8-bit: its weights are read
    through constexpr_blockwise_shift_scale, and it stays at least as close to torch as per-channel int8."""
    package = ios["int8-block32"]["file"]
    assert _scales_per_row(package) == {32}, _scales_per_row(package)
    assert _scales_per_row(ios["int8"]["file"]) == {None}  # one scale per output channel
    assert coreml_decoder.package_size(package) < 0.6 * coreml_decoder.package_size(ios["fp16"]["file"])
    checks = {p: decoder_check.agreement(reference["logits"], ios[p]["result"].outputs[0]["logits"][0])
              for p in ("int8", "int8-block32")}
    assert checks["int8-block32"].same_top1 >= 0.95 and checks["int8-block32"].cosine > 0.999, checks
    assert checks["int8-block32"].max_abs <= checks["int8"].max_abs, checks


def test_bits_per_weight_count_the_scales_the_file_stores(ios, android, tiny_llama):
    """Bits per weight are the file's, scales included: Core ML's blocks of 32 carry an fp16 scale each (half
    a bit a weight more than per-channel int8; the nominal 8 for both before), and LiteRT's int4 blocks keep
    their scales in tensors of their own, counted as the weights' storage, not as more weights."""
    (per_row, weights), (per_block, block_weights) = (mlpackage_bits(ios[p]["file"]) for p in ("int8", "int8-block32"))
    assert weights == block_weights and 8 < per_row / weights < 8.2, (per_row, weights)
    assert per_block / weights - per_row / weights > 0.4, (per_block, per_row, weights)
    int4 = litert_decoder.convert(tiny_llama, "int4", prefill_len=PREFILL, kv_len=128)
    (int8_bits, int8_weights), (int4_bits, int4_weights) = tflite_bits(android["weight-only-int8"]["file"]), tflite_bits(int4)
    assert int4_weights == int8_weights, (int4_weights, int8_weights)
    assert 4.5 < int4_bits / int4_weights < 4.8 and 8 < int8_bits / int8_weights < 8.3


def _scales_per_row(package: Path) -> set[int | None]:
    """The weights each int8 scale covers along a row, for every int8 weight of the package (None: the
    whole row), read from the program's constexpr ops by coremltools."""
    import coremltools as ct
    from coremltools.converters.mil.mil import types
    from coremltools.models.utils import _apply_graph_pass

    program = _apply_graph_pass(ct.models.MLModel(str(package), skip_model_load=True), [], return_pymil_prog=True)
    found = set()
    for op in program.functions["main"].operations:
        if op.op_type == "constexpr_blockwise_shift_scale" and types.builtin_to_string(op.data.dtype) == "int8":
            row, scales = op.data.shape[-1], op.scale.shape[-1]
            found.add(None if scales == 1 else row // scales)
    return found


def test_ios_program_keeps_the_cache_as_state(ios):
    """The package declares the KV cache as Core ML state, and the emulator refuses to run it without one."""
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "harness" / "ios"))
    from mil_emulator import Emulator

    emulator = Emulator(ios["fp16"]["file"])
    assert sorted(emulator.states) == ["k_cache", "v_cache"]
    inputs = {"input_ids": np.array([[5]], np.int32), "causal_mask": coreml_decoder.causal_mask(1, 0)}
    with pytest.raises(ValueError, match="keeps state"):
        emulator.predict(inputs)
    state = emulator.make_state()
    emulator.predict(inputs, state)
    assert float(state.values["k_cache"][:, :, :, 0].abs().sum()) > 0  # position 0 written
    assert float(state.values["k_cache"][:, :, :, 1:].abs().sum()) == 0  # nothing else


def test_unsupported_architecture_is_a_clear_error(tiny_llama, tmp_path):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    config = json.loads((tiny_llama / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UserError, match="GPT2LMHeadModel is not supported by litert-torch's generative builders: "
                                        "LlamaForCausalLM, Qwen2ForCausalLM"):
        litert_decoder.convert(folder, "fp32")
    with pytest.raises(UserError, match="GPT2LMHeadModel is not supported by edge-pack's Core ML decoder"):
        coreml_decoder.convert(folder, "int8")
    shutil.rmtree(folder)


# ------------------------------------------------------------------ through the CLI: build, validate, bench

# Rows the tiny Llama answers (tests/test_task_bench.py has more): task accuracy reaches the phone runners
# through their asks.
TASK_ROWS = [{"id": "import", "prompt": "import os\nimport", "choices": ["sys", "xyzzy"], "answer": "sys"},
             {"id": "init", "prompt": "def __init__(self", "answer": "self", "score": "contains"}]


def _build_and_bench(tiny_llama, tmp_path, target: str, precisions, *flags):
    from conftest import edge_pack as run_cli

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(row) + "\n" for row in TASK_ROWS))
    out = tmp_path / "bundle"
    args = [a for p in precisions for a in ("-p", p)]
    built = run_cli("build", tiny_llama, "--target", target, *args, *flags, "-o", out)
    assert built.code == 0, built.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    bench = run_cli("bench", out, "--eval", tasks, "--max-new-tokens", 8, "--runs", 2, "--warmup", 0)
    assert bench.code == 0, bench.stderr
    results = json.loads((out / "results.json").read_text())
    rows = {r["precision"]: r for r in results["rows"] if r["target"] == target and r["error"] is None}
    baseline = [s["output"] for s in results["targets"][target]["baseline"]["samples"]]
    return manifest, rows, baseline


def test_android_build_and_bench_of_a_decoder(tiny_llama, tmp_path):
    """`build --target android` hands a decoder to litert-torch's generative converter and validates each
    file through its prefill/decode signatures against torch; full-integer int8 has no decoder recipe and is
    skipped with the reason; bench measures next-token fidelity, speed and task accuracy on LiteRT."""
    manifest, rows, baseline = _build_and_bench(tiny_llama, tmp_path, "android", ["fp32", "dynamic-int8", "int8"])
    built = {a["precision"]: a for a in manifest["artifacts"]}
    assert set(built) == {"fp32", "dynamic-int8"}
    assert built["fp32"]["validation"]["max_abs"] < 1e-3 and built["fp32"]["validation"]["positions"] > 100
    assert built["dynamic-int8"]["bytes"] < 0.4 * built["fp32"]["bytes"]
    assert built["dynamic-int8"]["recipe"]["quantize"] == "dynamic_int8"
    skipped = {r["precision"]: r for r in manifest["rejected"]}
    assert skipped["int8"]["status"] == "skipped" and "no decoder recipe for int8" in skipped["int8"]["reason"]
    assert set(rows) == {"fp32", "dynamic-int8"}
    assert rows["fp32"]["metrics"]["same_top1"] == 1.0
    assert rows["dynamic-int8"]["metrics"]["same_top1"] >= 0.95
    assert rows["dynamic-int8"]["metrics"]["decode_tokens_per_s"] > 0
    assert rows["fp32"]["quality"]["name"] == "task accuracy"
    assert [s["output"] for s in rows["fp32"]["samples"]] == baseline  # torch's greedy answers, through the cache
    # Each .tflite also ships as the .litertlm LiteRT-LM loads: a support file, not the model's size.
    bundles = manifest["targets"]["android"]["litertlm"]
    assert {b["precision"] for b in bundles.values()} == {"fp32", "dynamic-int8"}
    shipped = {f["path"]: f["bytes"] for f in manifest["targets"]["android"]["files"]}
    for name, bundle in bundles.items():
        model = built[bundle["precision"]]
        assert shipped[f"android/{name}"] > model["bytes"] and name not in str(model["files"])
        assert bundle_sections(tmp_path / "bundle" / "android" / name) >= {"TFLiteModel", "HF_Tokenizer_Zlib"}


def bundle_sections(path: Path) -> set[str]:
    """The section types of a .litertlm file, read by litert-lm-builder's own header reader."""
    import io

    from litert_lm_builder import litertlm_core, litertlm_peek

    header = litertlm_peek.read_litertlm_header(str(path), io.StringIO()).SectionMetadata()
    return {litertlm_core.any_section_data_type_to_string(header.Objects(i).DataType())
            for i in range(header.ObjectsLength())}


def test_ios_build_and_bench_of_a_decoder(tiny_llama, tmp_path):
    """`build --target ios` makes the stateful iOS 18 program (an older --min-ios is refused), validated in
    the emulator through its state against torch; fp32 is not a decoder precision here and is skipped."""
    from conftest import assert_one_line_error, edge_pack as run_cli

    refused = run_cli("build", tiny_llama, "--target", "ios", "-p", "int8", "--min-ios", "16", "-o", tmp_path / "no")
    assert_one_line_error(refused, 2, "Core ML state", "--min-ios 18")
    assert not (tmp_path / "no" / "manifest.json").exists()
    manifest, rows, baseline = _build_and_bench(tiny_llama, tmp_path, "ios", ["fp32", "fp16", "int8"])
    built = {a["precision"]: a for a in manifest["artifacts"]}
    assert set(built) == {"fp16", "int8"}
    assert built["int8"]["bytes"] < 0.6 * built["fp16"]["bytes"]
    assert {r["precision"]: r["status"] for r in manifest["rejected"]} == {"fp32": "skipped"}
    assert built["int8"]["recipe"]["min_ios"] == 18
    assert rows["fp16"]["metrics"]["same_top1"] >= 0.99 and rows["int8"]["metrics"]["same_top1"] >= 0.95
    assert rows["fp16"]["latency_note"] == "emulated — no device latency"
    assert [s["output"] for s in rows["fp16"]["samples"]] == baseline
