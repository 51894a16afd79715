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
    for precision in ("fp32", "dynamic-int8"):
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
    data = bundle.read_bytes()
    assert data[:8] == b"LITERTLM"
    assert len(data) > android["dynamic-int8"]["file"].stat().st_size
    assert b"TFL3" in data  # the flatbuffer inside


@pytest.fixture(scope="module")
def ios(tiny_llama, reference):
    found = {}
    for precision in ("fp16", "int8"):
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
