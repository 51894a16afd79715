"""Decoders on the web target: the tiny Llama of tests/models.py exported with its KV cache at every web
precision, validated through its own cache path in onnxruntime, then generating greedily with
Transformers.js in Node and in a real headless Chromium (WASM), token for token against torch's greedy
generation. One build is shared by every test of this file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import edge_pack
from edge_pack.errors import RunnerError
from edge_pack.measure import validate
from edge_pack.runners import RunOptions, get_runner, transformers_js

PRECISIONS = ("fp32", "fp16", "q8", "q4", "q4f16")
FILES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "q8": "model_quantized.onnx", "q4": "model_q4.onnx",
         "q4f16": "model_q4f16.onnx"}
PROMPTS = ["def main():\n    ", "import os\nimport sys\n\n", "class Parser:\n    def __init__(self"]
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def bundle(bundle_of, tiny_llama) -> Path:
    return bundle_of(tiny_llama, ["web"], PRECISIONS)


@pytest.fixture(scope="module")
def asks(tiny_llama) -> list[dict]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    return [{"id": i, "prompt": tokenizer(p)["input_ids"], "max_new_tokens": NEW_TOKENS,
             "stop": [tokenizer.eos_token_id]} for i, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def torch_greedy(tiny_llama, asks) -> list[list[int]]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    found = []
    for ask in asks:
        with torch.no_grad():
            out = model.generate(torch.tensor([ask["prompt"]]), attention_mask=torch.ones(1, len(ask["prompt"]),
                                 dtype=torch.long), max_new_tokens=NEW_TOKENS, do_sample=False,
                                 eos_token_id=ask["stop"], pad_token_id=ask["stop"][0])
        found.append(out[0, len(ask["prompt"]):].tolist())
    return found


def _answers(runtime: str, bundle: Path, precision: str, asks: list[dict]) -> list[dict]:
    options = RunOptions(warmup=0, runs=0, task="text-generation")
    return get_runner(runtime).run([bundle / "web" / "onnx" / FILES[precision]], [], None, options, asks=asks).answers


def _same_sequence(answers: list[dict], reference: list[list[int]]) -> float:
    return float(np.mean([a["tokens"] == r for a, r in zip(answers, reference)]))


def test_every_precision_builds_in_the_transformers_js_layout(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert not manifest["rejected"], manifest["rejected"]
    assert sorted(a["precision"] for a in manifest["artifacts"]) == sorted(PRECISIONS)
    web = bundle / "web"
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (web / name).is_file(), name
    graph = onnx.load(str(web / "onnx" / "model_q4.onnx"), load_external_data=False)
    inputs = [i.name for i in graph.graph.input]
    outputs = [o.name for o in graph.graph.output]
    assert inputs[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert "past_key_values.0.key" in inputs and "present.0.key" in outputs and outputs[0] == "logits"
    recipes = json.loads((web / "quantize_config.json").read_text())["precisions"]
    assert recipes["q8"]["bits"] == 8 and recipes["q4"]["bits"] == 4
    # The embedding is quantized too (its own table: the tiny Llama does not tie it to the lm_head).
    assert not recipes["q4"]["tied_embedding"]
    assert not any(n.op_type == "Gather" and n.input[0] == "model.embed_tokens.weight" for n in graph.graph.node)
    sizes = {a["precision"]: a["bytes"] for a in manifest["artifacts"]}
    assert sizes["q4"] < sizes["q8"] < sizes["fp16"] < sizes["fp32"]
    # Validation ran through the cache path (prefill, then one token at a time) against torch.
    checks = {a["precision"]: a["validation"] for a in manifest["artifacts"]}
    assert checks["fp32"]["cosine_min"] > 0.9999 and checks["fp32"]["same_top1"] == 1.0


def test_onnxruntime_generation_through_the_cache_matches_torch_greedy(bundle, asks, torch_greedy):
    answers = _answers("ort", bundle, "fp32", asks)
    assert [a["tokens"] for a in answers] == torch_greedy
    assert all(len(a["logprobs"]) == len(a["tokens"]) and a["first_token_ms"] > 0 for a in answers)


@pytest.mark.parametrize("runtime", ["node", "browser"])
def test_transformers_js_generates_every_precision(runtime, bundle, asks, torch_greedy):
    missing = transformers_js.missing(browser=runtime == "browser")
    if missing:
        pytest.skip(f"web runtimes not installed here ({'; '.join(missing)}); `make web-runtimes` installs them")
    rates = {}
    for precision in PRECISIONS:
        answers = _answers(runtime, bundle, precision, asks)
        assert [a["id"] for a in answers] == [a["id"] for a in asks]
        assert all(0 < len(a["tokens"]) <= NEW_TOKENS and a["first_token_ms"] > 0 for a in answers), answers
        rates[precision] = _same_sequence(answers, torch_greedy)
    assert rates["fp32"] == 1.0, rates  # the export is faithful: same tokens as torch, token for token
    assert rates["q8"] >= 2 / 3, rates


def test_a_misnamed_cache_input_fails_validation_saying_so(bundle, tmp_path, tiny_llama):
    from edge_pack.evalset import Preprocessor, make_evalset
    from edge_pack.measure import reference_vectors
    from edge_pack.source import load_source

    graph = onnx.load(str(bundle / "web" / "onnx" / "model.onnx"))
    for item in graph.graph.input:
        if item.name == "past_key_values.0.key":
            item.name = "past_key_values.0.keys"
    for node in graph.graph.node:
        node.input[:] = ["past_key_values.0.keys" if i == "past_key_values.0.key" else i for i in node.input]
    broken = tmp_path / "onnx" / "model.onnx"
    broken.parent.mkdir()
    onnx.save(graph, str(broken))
    source = load_source(str(tiny_llama))
    pre = Preprocessor("text-generation", tiny_llama, None)
    checks = make_evalset(pre, None, seq_len=32, label_names=None, embedder=False).head(2)
    baseline, kind = reference_vectors(source.reference(), "text-generation", checks.samples)
    target = edge_pack.targets.get_target("web")
    with pytest.raises(RunnerError) as failure:
        validate("ort", [broken], target.precision("fp32"), "text-generation", checks, baseline, kind)
    message = str(failure.value)
    assert "KV cache is broken" in message and "past_key_values.0.keys has no output present.0.keys" in message
    assert "\n" not in message


@pytest.mark.parametrize("bits", [8, 4])
def test_a_tied_embedding_and_lm_head_share_one_quantized_table(bits):
    """A tied model (SmolLM2's layout) in miniature: the lookup and the lm_head read one stored table, and
    the lookup returns the quantized table's rows exactly as the lm_head sees them."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edge_pack.converters.web_decoder import quantize_decoder, share_tied_table

    rng = np.random.default_rng(0)
    table = rng.normal(size=(512, 64)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["hidden"], name="embed"),
             helper.make_node("MatMul", ["hidden", "head"], ["logits"], name="lm_head")]
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, None])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, None, 512])],
                              [numpy_helper.from_array(table, "table"), numpy_helper.from_array(table.T.copy(), "head")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    assert share_tied_table(model)  # the exporter's copy becomes a Transpose of the table
    assert [t.name for t in model.graph.initializer] == ["table"]
    quantized, recipe = quantize_decoder(model, bits)
    assert recipe["tied_embedding"] and recipe["shared_table"]
    big = [t for t in quantized.graph.initializer if np.prod(t.dims) >= 512 * 64 * bits // 8]
    assert len(big) == 1, [(t.name, list(t.dims)) for t in quantized.graph.initializer]  # one table, not two
    ids = np.array([[3, 99, 511, 3]], dtype=np.int64)
    session = ort.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input_ids": ids})[0][0]
    exact = table[ids[0]] @ table.T
    cosine = (logits * exact).sum(-1) / np.linalg.norm(logits, axis=-1) / np.linalg.norm(exact, axis=-1)
    assert cosine.min() > (0.9999 if bits == 8 else 0.98), cosine
    assert np.array_equal(logits.argmax(-1), ids[0])  # each row is still most like itself
