"""The web target end to end on the real demo model: build, the Transformers.js layout, the manifest,
bench against the fp32 source, the SLA verdict and verify."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import ROOT, edge_pack

LAYOUT = {
    "fp32": "model.onnx", "fp16": "model_fp16.onnx", "q8": "model_quantized.onnx", "int8": "model_int8.onnx",
    "uint8": "model_uint8.onnx", "q4": "model_q4.onnx", "q4f16": "model_q4f16.onnx",
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, minilm) -> Path:
    out = tmp_path_factory.mktemp("minilm") / "bundle"
    run = edge_pack("build", "demo", "--target", "web", "--out", out)
    assert run.code == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def results(bundle) -> dict:
    run = edge_pack("bench", bundle, "--eval", ROOT / "examples/demo/eval.jsonl", "--runs", "5", "--json")
    assert run.code == 0, run.stderr
    return run.json()


def test_layout_is_what_transformers_js_loads(bundle):
    web = bundle / "web"
    assert sorted(p.name for p in (web / "onnx").iterdir()) == sorted(LAYOUT.values())
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "quantize_config.json"):
        assert (web / name).is_file(), name
    recipes = json.loads((web / "quantize_config.json").read_text())["precisions"]
    assert set(recipes) == set(LAYOUT)
    assert recipes["q8"]["weight_type"] == "QInt8" and recipes["q8"]["per_channel"] is True
    assert recipes["uint8"]["weight_type"] == "QUInt8"
    assert recipes["q4"]["block_size"] == 32 and recipes["q4"]["quantized_nodes"] > 0


def test_files_hold_the_precision_they_are_named_for(bundle):
    onnx_dir = bundle / "web" / "onnx"

    def ops(name):
        return {n.op_type for n in onnx.load(str(onnx_dir / name), load_external_data=False).graph.node}

    def initializer_types(name):
        model = onnx.load(str(onnx_dir / name))
        return {onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in model.graph.initializer}

    assert "MatMulInteger" in ops("model_quantized.onnx")
    assert "MatMulNBits" in ops("model_q4.onnx") and "MatMulNBits" in ops("model_q4f16.onnx")
    assert "Gather" in ops("model_q4.onnx") and "GatherBlockQuantized" not in ops("model_q4.onnx")
    assert "int8" in initializer_types("model_int8.onnx")
    assert "uint8" in initializer_types("model_uint8.onnx")
    assert "float16" in initializer_types("model_fp16.onnx")
    # keep_io_types: the browser still feeds and reads float32/int64
    fp16 = onnx.load(str(onnx_dir / "model_fp16.onnx"), load_external_data=False)
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_manifest_lists_every_file_with_its_hash(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["schema"] == 1
    assert manifest["source"]["task"] == "feature-extraction" and len(manifest["source"]["sha256"]) == 64
    assert manifest["tool"]["edge_pack"] and "onnxruntime" in manifest["tool"]["libraries"]
    by_precision = {a["precision"]: a for a in manifest["artifacts"]}
    assert set(by_precision) == set(LAYOUT)
    for precision, artifact in by_precision.items():
        (entry,) = artifact["files"]
        assert entry["path"] == f"web/onnx/{LAYOUT[precision]}"
        assert entry["bytes"] == (bundle / entry["path"]).stat().st_size == artifact["bytes"]
        assert len(entry["sha256"]) == 64
        assert artifact["validation"]["cosine_min"] >= 0.8
    # q8 is at most 30% of fp32; fp16 about half
    assert by_precision["q8"]["bytes"] <= 0.30 * by_precision["fp32"]["bytes"]
    assert by_precision["fp16"]["bytes"] <= 0.55 * by_precision["fp32"]["bytes"]
    assert edge_pack("verify", bundle).code == 0


def test_bench_measures_fidelity_against_the_fp32_source(results):
    rows = {r["precision"]: r for r in results["rows"]}
    web = results["targets"]["web"]
    assert web["baseline"]["origin"] == "fp32 source (PyTorch)"
    assert rows["fp32"]["metrics"]["cosine_min"] > 0.9999
    assert rows["fp16"]["metrics"]["cosine_mean"] > 0.999
    assert rows["q8"]["metrics"]["cosine_mean"] >= 0.98
    assert 0.9 < rows["q4"]["metrics"]["cosine_mean"] < rows["q8"]["metrics"]["cosine_mean"]
    for row in rows.values():
        assert row["latency_runs"] == 5 and row["latency_p50_ms"] > 0
        assert row["latency_p90_ms"] >= row["latency_p50_ms"]
        assert row["load_ms"] > 0 and row["peak_rss_mb"] > 50
        assert 0 <= row["metrics"]["retrieval_agreement"] <= 1
        assert row["quality"]["name"] == "centroid accuracy"
    assert web["baseline"]["quality"]["value"] > 0.7  # MiniLM separates the six demo topics
    # the recommendation is the smallest passing candidate; q8 and int8 are one file for MiniLM (no Conv),
    # which counts once, under the name listed first
    assert rows["q8"]["content"] == rows["int8"]["content"] != rows["uint8"]["content"]
    passing = [r for r in rows.values() if r["verdict"]["passed"] and r["precision"] != "int8"]
    assert web["recommended"] == min(passing, key=lambda r: (r["bytes"], r["latency_p50_ms"]))["precision"]


def test_bench_writes_results_beside_the_manifest(bundle, results):
    saved = json.loads((bundle / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(results["rows"]))
    manifest = json.loads((bundle / "manifest.json").read_text())
    measured = {a["precision"]: a["measured"] for a in manifest["artifacts"]}
    assert measured["q8"]["verdict"]["passed"] is True
    assert manifest["verdict"]["web"]["recommended"] == results["targets"]["web"]["recommended"]
    assert edge_pack("verify", bundle).code == 0  # results do not make the bundle unverifiable


def test_sla_failure_exits_1_and_says_by_how_much(bundle, tmp_path):
    sla = tmp_path / "edge-pack.toml"
    sla.write_text("[sla]\nmin_accuracy_ratio = 0.5\n[sla.web]\nmax_size_mb = 5\n")
    run = edge_pack("bench", bundle, "--sla", sla, "--runs", "2", "-p", "q8", "-p", "fp32")
    assert run.code == 1, run.stderr
    assert "size 22.9 MB > 5 MB" in run.stdout
    assert "no candidate meets the SLA" in run.stdout


def test_verify_names_missing_altered_and_unlisted_files(bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    with open(copy / "web/onnx/model_q4.onnx", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01")
    (copy / "web/onnx/model_int8.onnx").unlink()
    (copy / "web/extra.txt").write_text("not from edge-pack")
    run = edge_pack("verify", copy, "--json")
    assert run.code == 1
    report = run.json()
    assert report["altered"] == ["web/onnx/model_q4.onnx"]
    assert report["missing"] == ["web/onnx/model_int8.onnx"]
    assert report["unlisted"] == ["web/extra.txt"]


def test_rebuilding_one_precision_keeps_the_folder_whole(bundle, tmp_path):
    """A build of a subset replaces the target's folder whole; the previous content is gone, not mixed in."""
    out = tmp_path / "subset"
    shutil.copytree(bundle, out)
    run = edge_pack("build", "demo", "--target", "web", "-p", "fp16", "--out", out)
    assert run.code == 0, run.stderr
    assert [p.name for p in (out / "web" / "onnx").iterdir()] == ["model_fp16.onnx"]
    assert edge_pack("verify", out).code == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".subset")]  # no staging leftovers


def test_embeddings_match_sentence_transformers(bundle, minilm):
    """The fp32 file with Transformers.js' pooling reproduces the reference library's embeddings."""
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    texts = ["edge devices need small models", "the weather is nice today"]
    expected = SentenceTransformer(str(minilm), device="cpu").encode(texts, normalize_embeddings=True)
    tokenizer = AutoTokenizer.from_pretrained(str(bundle / "web"))
    session = ort.InferenceSession(str(bundle / "web/onnx/model.onnx"), providers=["CPUExecutionProvider"])
    for text, reference in zip(texts, expected):
        feeds = {k: v.astype(np.int64) for k, v in tokenizer(text, return_tensors="np").items()}
        hidden = session.run(None, feeds)[0]
        mask = feeds["attention_mask"][..., None]
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        pooled /= np.linalg.norm(pooled)
        assert np.abs(pooled[0] - reference).max() < 1e-4


def test_int8_answers_the_same_on_a_cpu_without_vnni(tmp_path):
    """onnxruntime's default u8s8 kernel on x86 without VNNI (AVX2: Haswell, AMD EPYC before Zen 4) saturates
    a 16-bit intermediate, so an int8 model answers wrong on such a host and right everywhere else. The ort
    runner asks for the exact kernel. The older CPU is real code on an emulated CPU: qemu-user with
    `-cpu Haswell` (AVX2, no VNNI) runs the same harness script; this machine's own CPU may have VNNI."""
    import shutil as shell
    import sys

    from onnx import TensorProto, helper, numpy_helper

    from edge_pack.runners import RunOptions
    from edge_pack.runners.local import run_harness

    qemu = shell.which("qemu-x86_64")
    assert qemu, "qemu-user is not installed (make test installs it)"
    # Every product u8 x s8 is 255 x 127 and a pair of them overflows int16: the worst case, on purpose.
    weights = np.ones((64, 8), np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "saturates",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
                              [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "model.onnx"))
    run = edge_pack("build", tmp_path / "model.onnx", "-t", "web", "-p", "q8", "-o", tmp_path / "out")
    assert run.code == 0, run.stderr
    sample = {"x": np.ones((1, 64), np.float32)}
    result = run_harness("ort/run.py", tmp_path / "out/web/onnx/model_quantized.onnx", [sample], None,
                         RunOptions(warmup=0, runs=0, timeout_s=300), command=[qemu, "-cpu", "Haswell", sys.executable])
    assert np.allclose(result.outputs[0]["y"], 64.0, rtol=0.02), result.outputs[0]["y"]  # saturated: 32.4
