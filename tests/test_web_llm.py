"""Decoders on the web target: the tiny Llama of tests/models.py exported with its KV cache at every web
precision, validated through its own cache path in onnxruntime, then generating greedily with
Transformers.js in Node and in a real headless Chromium (WASM), token for token against torch's greedy
generation. One build is shared by every test of this file."""
from __future__ import annotations

import copy
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
    # q8 keeps the embedding table and the lm_head float (float16 storage), q4 quantizes them too
    assert recipes["q8"]["embedding"].startswith("float16") and recipes["q8"]["lm_head"].startswith("MatMul on")
    q8 = onnx.load(str(web / "onnx" / "model_quantized.onnx"), load_external_data=False)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 and t.name.startswith("model.embed_tokens")
               for t in q8.graph.initializer)
    # its layers' 8-bit weights are unpacked by constant ops onnxruntime folds at load (no MatMulNBits node)
    assert "dequantized once at load" in recipes["q8"]["matmul"]
    assert not any(n.op_type == "MatMulNBits" for n in q8.graph.node)
    assert not recipes["q8"]["symmetric"]  # a zero point a block (targets/web.toml decoder_symmetric)
    assert recipes["q8"]["block_size"] == 16 and recipes["q8"]["scales"] == "float16"
    # the lm_head's weight is 8-bit too (decoder_table = "dequantized"); the untied lookup table stays float16
    assert "8-bit table" in recipes["q8"]["lm_head"]
    assert sum(t.data_type == onnx.TensorProto.UINT8 for t in q8.graph.initializer) == 2 * recipes["q8"]["quantized_nodes"]
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


# ------------------------------------------------------------------------------ SmolLM2-135M-Instruct

SMOL_PRECISIONS = ("q8", "q4f16")
CHAT_PROMPTS = ["What is the capital of France?", "Name three colours.", "What is 7 plus 5?",
                "Write one sentence about the sea.", "Why is the sky blue?", "Give me a tip for learning to cook."]
SMOL_TOKENS = 16
# torch's own lead of its greedy token over the runner-up, in logits, below which a step is a near tie that
# 8-bit rounding may flip (measured: blocks of 32 left torch on these prompts at leads of 0.05, symmetric ones at
# 0.08 and 0.14, identically in onnxruntime, Node and Chromium; a broken cache path parts at decisive steps too).
NEAR_TIE = 0.25


@pytest.fixture(scope="module")
def smollm2_web(tmp_path_factory):
    """The issue's done means: SmolLM2-135M-Instruct built once for web at q8 and q4f16, answering a few
    chat prompts greedily in Transformers.js in Node and in Chromium; torch's greedy answers to them and
    its lead over the runner-up token at each of their steps."""
    from transformers import AutoTokenizer

    import smollm2
    from edge_pack.decoder_check import load_torch, torch_logits
    from edge_pack.generation import Prompter, torch_answers
    from edge_pack.tasks import TaskRow

    for runtime in ("node", "browser"):
        missing = transformers_js.missing(browser=runtime == "browser")
        if missing:
            pytest.skip(f"web runtimes not installed here ({'; '.join(missing)}); `make web-runtimes` installs them")
    model = smollm2.smollm2()
    bundle = tmp_path_factory.mktemp("smollm2-web") / "bundle"
    edge_pack.build(str(model), ["web"], list(SMOL_PRECISIONS), bundle)
    prompter = Prompter(AutoTokenizer.from_pretrained(model), max_new_tokens=SMOL_TOKENS, support_dir=model)
    asks = [prompter.ask(TaskRow(id=str(i), line=i + 1, prompt=p, answer="", scorer="contains"))
            for i, p in enumerate(CHAT_PROMPTS)]
    torch_model = load_torch(model)
    reference = [a.tokens for a in torch_answers(torch_model, asks)]
    leads = []
    for ask, tokens in zip(asks, reference):
        ranked = np.sort(torch_logits(torch_model, ask.prompt + tokens)[len(ask.prompt) - 1:], -1)
        leads.append((ranked[:, -1] - ranked[:, -2]).tolist())
    answers = {(runtime, precision): [a["tokens"] for a in _answers(runtime, bundle, precision,
                                                                     [a.to_json() for a in asks])]
               for runtime in ("node", "browser") for precision in SMOL_PRECISIONS}
    return bundle, reference, leads, answers


def _first_difference(a: list[int], b: list[int]) -> int | None:
    """The first step where the two answers part within SMOL_TOKENS (None: the same answer)."""
    a, b = a[:SMOL_TOKENS], b[:SMOL_TOKENS]
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_smollm2_builds_for_web_at_q8_and_q4f16(smollm2_web):
    bundle = smollm2_web[0]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert not manifest["rejected"], manifest["rejected"]
    checks = {a["precision"]: a["validation"] for a in manifest["artifacts"]}
    assert sorted(checks) == sorted(SMOL_PRECISIONS)
    # the page's own tokenizer (Transformers.js on the bundle's tokenizer.json) splits text as the source does
    assert all(c["tokenizer"]["same_ids"] for c in checks.values()), checks
    assert checks["q8"]["same_top1"] > 0.9, checks


@pytest.mark.parametrize("runtime", ["node", "browser"])
def test_smollm2_q8_answers_as_torch_for_16_tokens_in_transformers_js(smollm2_web, runtime):
    _, reference, leads, answers = smollm2_web
    same = 0
    for prompt, ref, lead, found in zip(CHAT_PROMPTS, reference, leads, answers[runtime, "q8"]):
        at = _first_difference(ref, found)
        if at is None:
            same += 1
            continue
        # parting from torch is 8-bit rounding only where torch itself nearly tied
        assert at < len(lead) and lead[at] < NEAR_TIE, (prompt, at, lead, ref, found)
    # measured: 6/6 (asymmetric blocks of 16, the table at 8 bits too), as in onnxruntime
    assert same == len(CHAT_PROMPTS), (same, answers[runtime, "q8"], reference)
    assert sum(len(r) == SMOL_TOKENS for r in reference) >= len(CHAT_PROMPTS) - 1  # 16 tokens compared
    # q4f16 loads and answers; how often it keeps torch's sequence is recorded, not asserted (4-bit loss)
    q4f16 = answers[runtime, "q4f16"]
    assert all(0 < len(a) <= SMOL_TOKENS for a in q4f16), q4f16
    rate = np.mean([_first_difference(r, a) is None for r, a in zip(reference, q4f16)])
    print(f"SmolLM2 on {runtime}: same first {SMOL_TOKENS} tokens as torch: q8 {same}/{len(reference)}, "
          f"q4f16 {rate:.2f}")


def _one_layer_decoder(seed: int, width: int):
    """The smallest graph quantize_decoder reads: an embedding Gather, one constant MatMul layer, an lm_head."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    table, body = rng.normal(size=(256, width)).astype(np.float32), rng.normal(size=(width, width)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["hidden"], name="embed"),
             helper.make_node("MatMul", ["hidden", "body"], ["mixed"], name="layer"),
             helper.make_node("MatMul", ["mixed", "head"], ["logits"], name="lm_head")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, None])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, None, 256])],
                              [numpy_helper.from_array(table, "table"), numpy_helper.from_array(body, "body"),
                               numpy_helper.from_array(table.T.copy(), "head")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("symmetric", [True, False])
def test_q8_weights_dequantized_at_load_are_the_matmulnbits_weights(symmetric):
    """decoder_matmul = "dequantized": the file keeps MatMulNBits' 8-bit bytes and scales, unpacked by plain
    ops on constants (onnxruntime folds them once at load, so the matmuls run in float32) — the same
    weights as the MatMulNBits file, so the same outputs; an input axis that is not a multiple of the
    block (80 here) drops MatMulNBits' padding; asymmetric blocks read their zero points."""
    import onnxruntime as ort
    from onnx import TensorProto

    from edge_pack.converters.web_decoder import quantize_decoder

    model = _one_layer_decoder(seed=1, width=80)
    ids = np.array([[5, 17, 255]], dtype=np.int64)
    logits, files = {}, {}
    for matmul in ("nbits", "dequantized"):
        quantized, recipe = quantize_decoder(copy.deepcopy(model), 8, "float16", matmul, symmetric=symmetric)
        files[matmul] = quantized
        session = ort.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
        logits[matmul] = session.run(None, {"input_ids": ids})[0]
    ops = {n.op_type for n in files["dequantized"].graph.node}
    assert "MatMulNBits" not in ops and "MatMul" in ops, ops
    stored = [t for t in files["dequantized"].graph.initializer if t.data_type in (TensorProto.INT8, TensorProto.UINT8)]
    # one byte a weight, K padded to 3 blocks of 32 as MatMulNBits stores it (int8; uint8 beside a byte zero
    # point a block)
    assert sorted((int(np.prod(t.dims)), t.data_type) for t in stored) == \
        ([(96 * 80, TensorProto.INT8)] if symmetric else [(3 * 80, TensorProto.UINT8), (96 * 80, TensorProto.UINT8)])
    np.testing.assert_allclose(logits["dequantized"], logits["nbits"], rtol=1e-5, atol=1e-4)
    assert "dequantized once at load" in recipe["matmul"]


def test_q8_layers_too_big_to_hold_as_float32_stay_matmulnbits():
    """decoder_dequantized_max_mb: a decoder whose layers would take more float32 memory than the page can
    hold once dequantized keeps the MatMulNBits node (slower, 8-bit in memory), and its recipe says why."""
    from edge_pack.converters.web_decoder import quantize_decoder

    model = _one_layer_decoder(seed=2, width=64)
    layer_mb = 64 * 64 * 4 / 1e6  # the one layer's weight as float32
    for limit, kept in ((layer_mb * 2, False), (layer_mb / 2, True)):
        quantized, recipe = quantize_decoder(copy.deepcopy(model), 8, "float16", "dequantized",
                                             dequantized_max_mb=limit)
        assert any(n.op_type == "MatMulNBits" for n in quantized.graph.node) == kept, limit
        assert recipe["float32_layers_mb"] == round(layer_mb, 1)
        assert ("dequantized_max_mb" in recipe) == kept and ("MatMulNBits" in recipe["matmul"]) == kept


def test_q8_table_at_8_bits_is_dequantized_at_load_and_shared_by_the_lookup(tmp_path):
    """decoder_table = "dequantized" (blocks of 16, float16 scales): a tied table is quantized once, as the
    lm_head's weight, and both the lm_head and the embedding lookup read it dequantized at load: no
    MatMulNBits node, no float table in the file, one byte a weight plus float16 scales, float32 logits
    that follow the float model's."""
    import onnxruntime as ort
    from onnx import TensorProto

    from edge_pack.converters.web_decoder import quantize_decoder

    model = _one_layer_decoder(seed=3, width=80)
    ids = np.array([[5, 17, 255]], dtype=np.int64)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        None, {"input_ids": ids})[0]
    reference = run(model)
    quantized, recipe = quantize_decoder(copy.deepcopy(model), 8, "dequantized", "dequantized", block=16,
                                         scales="float16")
    assert not any(n.op_type == "MatMulNBits" for n in quantized.graph.node)
    inits = {t.name: t for t in quantized.graph.initializer}
    gather = next(n for n in quantized.graph.node if n.op_type == "Gather")
    assert gather.input[0] not in inits  # it reads the folded, dequantized head weight
    by_type = {}
    for t in quantized.graph.initializer:
        by_type[t.data_type] = by_type.get(t.data_type, 0) + int(np.prod(t.dims))
    assert by_type[TensorProto.INT8] == 80 * 80 + 256 * 80  # the layer and the one table, a byte a weight
    assert by_type[TensorProto.FLOAT16] == (80 * 80 + 256 * 80) // 16  # a float16 scale a block of 16
    assert by_type.get(TensorProto.FLOAT, 0) == 0
    assert recipe["tied_embedding"] and recipe["quantized_nodes"] == 2 and recipe["scales"] == "float16"
    assert recipe["float32_layers_mb"] == round(80 * 80 * 4 / 1e6, 1)  # the layers only, not the table
    logits = run(quantized)
    cosine = np.sum(logits * reference) / np.linalg.norm(logits) / np.linalg.norm(reference)
    assert cosine > 0.999 and (logits.argmax(-1) == reference.argmax(-1)).all(), cosine
    # onnxruntime folds ONE float32 table that the lookup (its columns) and the lm_head both read, not a
    # transposed second copy for the lookup
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "folded.onnx")
    ort.InferenceSession(quantized.SerializeToString(), options, providers=["CPUExecutionProvider"])
    folded = onnx.load(str(tmp_path / "folded.onnx"))
    tables = [t.name for t in folded.graph.initializer if sorted(t.dims) == [80, 256]]
    assert len(tables) == 1, [(t.name, list(t.dims)) for t in folded.graph.initializer]
    readers = {n.op_type for n in folded.graph.node if tables[0] in n.input}
    assert readers == {"Gather", "MatMul"}, readers
