"""The android target end to end with real conversions (litert-torch), real quantization
(ai-edge-quantizer) and the real runtime (ai-edge-litert): a digits CNN (PyTorch entry point), a tiny text
classifier (Hugging Face BERT) and a tiny ViT (Hugging Face image classifier)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, edge_pack

pytest.importorskip("litert_torch", reason="the android toolchain is not installed (pip install 'edge-pack[android]')")
pytest.importorskip("ai_edge_litert", reason="the android toolchain is not installed (pip install 'edge-pack[android]')")

ALL = ("fp32", "fp16", "dynamic-int8", "int8", "int4")
COMPUTE = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL")


def _precision_flags(names=ALL) -> list[str]:
    return [flag for name in names for flag in ("-p", name)]


def _flatbuffer(path: Path):
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    model = tfl_flatbuffer_utils.read_model(str(path))
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return model, types, ops


def tensor_types(path: Path) -> set[str]:
    model, types, _ = _flatbuffer(path)
    return {types[t.type] for g in model.subgraphs for t in g.tensors}


def weight_bytes(path: Path) -> int:
    model, _, _ = _flatbuffer(path)
    return sum(len(b.data) for b in model.buffers if b.data is not None)


def compute_types(path: Path) -> set[str]:
    """Tensor types flowing into and out of the compute-heavy ops (biases aside)."""
    model, types, ops = _flatbuffer(path)
    found = set()
    for graph in model.subgraphs:
        for op in graph.operators:
            if ops[model.operatorCodes[op.opcodeIndex].builtinCode] in COMPUTE:
                found |= {types[graph.tensors[i].type] for i in list(op.inputs)[:2] + list(op.outputs) if i >= 0}
    return found


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory, digits_cnn_dir) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("digits-data")
    subprocess.run([sys.executable, "digits_cnn.py", str(folder / "eval.npz"), str(folder / "calibration.npz")],
                   cwd=digits_cnn_dir, check=True)
    return folder / "eval.npz", folder / "calibration.npz"


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory, digits_cnn_dir, digits_data) -> Path:
    out = tmp_path_factory.mktemp("digits") / "bundle"
    run = edge_pack("build", "digits_cnn:factory", "-t", "android", *_precision_flags(), "--calibration",
                    digits_data[1], "-o", out, cwd=digits_cnn_dir)
    assert run.code == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def digits_results(digits_bundle, digits_data) -> dict:
    run = edge_pack("bench", digits_bundle, "--eval", digits_data[0], "--runs", "5", "--json")
    assert run.code == 0, run.stderr
    return run.json()


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory, topic_classifier) -> Path:
    out = tmp_path_factory.mktemp("text") / "bundle"
    run = edge_pack("build", topic_classifier, "-t", "android", *_precision_flags(), "--calibration",
                    topic_classifier.parent / "eval.jsonl", "-o", out, "--json")
    assert run.code == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def text_results(text_bundle, topic_classifier) -> dict:
    run = edge_pack("bench", text_bundle, "--eval", topic_classifier.parent / "eval.jsonl", "--runs", "5", "--json")
    assert run.code == 0, run.stderr
    return run.json()


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _artifacts(bundle: Path) -> dict:
    return {a["precision"]: a for a in _manifest(bundle)["artifacts"]}


@pytest.mark.parametrize("which", ["digits", "text"])
def test_every_precision_converts_and_runs_in_litert(which, request):
    bundle = request.getfixturevalue(f"{which}_bundle")
    results = request.getfixturevalue(f"{which}_results")
    assert set(_artifacts(bundle)) == set(ALL)
    assert sorted(p.name for p in (bundle / "android").glob("*.tflite")) == sorted(
        f"model_{p.replace('-', '_')}.tflite" for p in ALL)
    rows = {r["precision"]: r for r in results["rows"]}
    assert set(rows) == set(ALL)
    for row in rows.values():
        assert row["error"] is None
        assert row["runtime"].startswith("LiteRT (ai-edge-litert")
        assert row["latency_runs"] == 5 and row["latency_p50_ms"] > 0 and row["load_ms"] > 0
    assert edge_pack("verify", bundle).code == 0


@pytest.mark.parametrize("which", ["digits", "text"])
def test_files_hold_the_types_they_are_named_for(which, request):
    android = request.getfixturevalue(f"{which}_bundle") / "android"
    assert compute_types(android / "model_fp32.tflite") <= {"FLOAT32", "INT32"}
    assert "FLOAT16" in tensor_types(android / "model_fp16.tflite")
    # dynamic range: int8 weights, float activations
    assert {"INT8", "FLOAT32"} <= compute_types(android / "model_dynamic_int8.tflite")
    assert "INT4" in tensor_types(android / "model_int4.tflite")
    # full integer: no float in or out of any compute op
    assert compute_types(android / "model_int8.tflite") <= {"INT8", "INT32"}


def test_int8_image_model_takes_and_gives_int8_with_its_scales(digits_bundle):
    io = _artifacts(digits_bundle)["int8"]["recipe"]["io"]
    (image,), (output,) = io["inputs"], io["outputs"]
    assert image["name"] == "image" and image["dtype"] == "int8" and image["layout"] == "NHWC"
    assert image["shape"] == [1, 8, 8, 1]
    assert 0 < image["quantization"]["scale"] < 0.01 and -128 <= image["quantization"]["zero_point"] <= 127
    assert output["dtype"] == "int8" and output["quantization"]["scale"] > 0
    # what the manifest says is what the file beside the models says
    assert json.loads((digits_bundle / "android/model_io.json").read_text())["model_int8.tflite"] == io
    fp32 = _artifacts(digits_bundle)["fp32"]["recipe"]["io"]
    assert fp32["inputs"][0]["dtype"] == "float32" and "quantization" not in fp32["inputs"][0]


def test_text_model_keeps_integer_token_ids_at_a_fixed_length(text_bundle):
    manifest = _manifest(text_bundle)
    io = _artifacts(text_bundle)["int8"]["recipe"]["io"]
    inputs = {i["name"]: i for i in io["inputs"]}
    assert set(inputs) >= {"input_ids", "attention_mask"}
    assert all(i["dtype"] == "int32" and i["shape"] == [1, 64] for i in inputs.values())
    assert manifest["targets"]["android"]["conversion"]["sequence_length"] == 64
    tokenizer = json.loads((text_bundle / "android/tokenizer_config.json").read_text())
    assert tokenizer["model_max_length"] == 64  # the bundle's tokenizer cuts where the model cuts


@pytest.mark.parametrize("which", ["digits", "text"])
def test_sizes_shrink_as_expected(which, request):
    artifacts = _artifacts(request.getfixturevalue(f"{which}_bundle"))
    android = request.getfixturevalue(f"{which}_bundle") / "android"
    weights = {p: weight_bytes(android / f"model_{p.replace('-', '_')}.tflite") for p in ALL}
    assert 0.45 < weights["fp16"] / weights["fp32"] < 0.6
    assert weights["dynamic-int8"] / weights["fp32"] < 0.35
    assert weights["int8"] / weights["fp32"] < 0.35
    assert weights["int4"] < weights["dynamic-int8"]
    sizes = {p: a["bytes"] for p, a in artifacts.items()}
    assert sizes["fp32"] > sizes["fp16"] > sizes["dynamic-int8"] > sizes["int4"]


def test_int8_keeps_digits_accuracy_within_two_points(digits_results):
    rows = {r["precision"]: r for r in digits_results["rows"]}
    assert digits_results["targets"]["android"]["eval"].endswith("(297 samples, labeled)")
    fp32 = rows["fp32"]["metrics"]["accuracy"]
    assert fp32 > 0.85
    assert abs(rows["int8"]["metrics"]["accuracy"] - fp32) <= 0.02
    assert rows["int8"]["metrics"]["top1_agreement"] >= 0.95


def test_fp32_matches_torch(digits_bundle, digits_cnn_dir, digits_data, text_results):
    import torch
    from ai_edge_litert.interpreter import Interpreter

    sys.path.insert(0, str(digits_cnn_dir))
    try:
        from digits_cnn import factory
    finally:
        sys.path.remove(str(digits_cnn_dir))
    module, _ = factory()
    images = np.load(digits_data[0])["image"][:50]
    runner = Interpreter(model_path=str(digits_bundle / "android/model_fp32.tflite")).get_signature_runner()
    with torch.no_grad():
        expected = module(torch.from_numpy(images)).numpy()
    got = np.concatenate([runner(image=image[None].transpose(0, 2, 3, 1))["output"] for image in images])
    assert np.abs(got - expected).max() <= 1e-4
    # the text model's fp32 file against its PyTorch source, through the bench
    fp32 = next(r for r in text_results["rows"] if r["precision"] == "fp32")
    assert text_results["targets"]["android"]["baseline"]["origin"] == "fp32 source (PyTorch)"
    assert fp32["metrics"]["max_abs"] <= 1e-4


def test_latency_is_cross_checked_with_litert_benchmark(digits_results, text_results):
    for row in digits_results["rows"]:
        assert row["metrics"]["litert_benchmark_p50_ms"] >= 0 and row["metrics"]["litert_benchmark_runs"] == 5
    for row in text_results["rows"]:  # both numbers, or the tool's own reason for not giving one
        assert "litert_benchmark_p50_ms" in row["metrics"] or row["metrics"]["litert_benchmark_error"]


def test_manifest_records_conversion_and_runtime_facts(digits_bundle, text_bundle):
    for bundle in (digits_bundle, text_bundle):
        manifest = _manifest(bundle)
        assert {"litert_torch", "ai_edge_quantizer", "ai_edge_litert"} <= set(manifest["tool"]["libraries"])
        for artifact in manifest["artifacts"]:
            runtime = artifact["recipe"]["runtime"]
            assert runtime["min_runtime_version"].count(".") == 2 and runtime["checked_on"].startswith("ai-edge-litert")
            assert artifact["recipe"]["weights"] and artifact["recipe"]["activations"]
    recipe = _artifacts(digits_bundle)["int8"]["recipe"]
    assert recipe["calibration"]["samples"] == 250 and "static_wi8_ai8" in recipe["method"]
    assert "dynamic" in _artifacts(digits_bundle)["dynamic-int8"]["recipe"]["activations"]
    notes = _manifest(text_bundle)["targets"]["android"]["notes"]
    assert any("only 80 calibration samples" in n for n in notes)  # fewer than 100: the user is told


def test_int8_is_skipped_without_calibration_and_nchw_keeps_pytorch_order(tmp_path, digits_cnn_dir):
    run = edge_pack("build", "digits_cnn:factory", "-t", "android", "-p", "fp32", "-p", "int8", "--layout", "nchw",
                    "-o", tmp_path / "b", "--json", cwd=digits_cnn_dir)
    assert run.code == 0, run.stderr
    manifest = run.json()
    (skipped,) = manifest["rejected"]
    assert skipped["precision"] == "int8" and skipped["status"] == "skipped"
    assert "--calibration FILE" in skipped["reason"]
    assert not (tmp_path / "b/android/model_int8.tflite").exists()
    (image,) = manifest["artifacts"][0]["recipe"]["io"]["inputs"]
    assert image["shape"] == [1, 1, 8, 8] and image["layout"] == "NCHW"


def test_image_classifier_with_a_folder_per_class(tmp_path, digits_classifier):
    """A Hugging Face ViT: NHWC pixel_values, its preprocessing in the manifest, labeled accuracy from class
    folders."""
    classes = tmp_path / "classes"
    for line in (digits_classifier.parent / "eval.jsonl").read_text().splitlines():
        row = json.loads(line)
        (classes / row["label"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(digits_classifier.parent / row["image"], classes / row["label"])
    out = tmp_path / "bundle"
    run = edge_pack("build", digits_classifier, "-t", "android", "-p", "fp32", "-p", "dynamic-int8", "-p", "int8",
                    "--calibration", classes, "-o", out)
    assert run.code == 0, run.stderr
    android = _manifest(out)["targets"]["android"]
    assert android["conversion"]["preprocessing"]["image_mean"] == [0.5, 0.5, 0.5]
    (pixels,) = _artifacts(out)["int8"]["recipe"]["io"]["inputs"]
    assert pixels["name"] == "pixel_values" and pixels["layout"] == "NHWC" and pixels["shape"] == [1, 16, 16, 3]
    run = edge_pack("bench", out, "--eval", classes, "--runs", "2", "--json")
    assert run.code == 0, run.stderr
    results = run.json()
    assert results["targets"]["android"]["eval"].endswith("(100 samples, labeled)")
    assert results["targets"]["android"]["baseline"]["quality"]["name"] == "accuracy"
    rows = {r["precision"]: r for r in results["rows"]}
    assert rows["fp32"]["metrics"]["top1_agreement"] == 1.0
    assert rows["fp32"]["metrics"]["accuracy"] == results["targets"]["android"]["baseline"]["quality"]["value"] > 0.5


# ------------------------------------------------------------------------------------------- bad input

@pytest.mark.bad_input
@pytest.mark.parametrize("image, words", [(np.zeros((120, 1, 8, 4), np.float32), ("image", "shape")),
                                          (np.zeros((120, 1, 8, 8), np.int64), ("image", "int64", "float32"))],
                         ids=["shape", "dtype"])
def test_calibration_of_the_wrong_shape_or_dtype_names_the_input(tmp_path, digits_cnn_dir, image, words):
    bad = tmp_path / "bad.npz"
    np.savez(bad, image=image)
    run = edge_pack("build", "digits_cnn:factory", "-t", "android", "-p", "int8", "--calibration", bad, "-o",
                    tmp_path / "b", cwd=digits_cnn_dir)
    assert_one_line_error(run, 2, *words)
    assert not (tmp_path / "b").exists()


@pytest.mark.bad_input
def test_missing_calibration_file(tmp_path, digits_cnn_dir):
    run = edge_pack("build", "digits_cnn:factory", "-t", "android", "--calibration", tmp_path / "nowhere.npz",
                    "-o", tmp_path / "b", cwd=digits_cnn_dir)
    assert_one_line_error(run, 2, "calibration file", "does not exist")


@pytest.mark.bad_input
def test_op_litert_cannot_express_is_named(tmp_path):
    (tmp_path / "cumulative.py").write_text(
        "import torch\n\n"
        "class Cumulative(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.cumprod(x, 1)\n\n"
        "def factory():\n"
        "    return Cumulative(), torch.ones(1, 4)\n")
    run = edge_pack("build", "cumulative:factory", "-t", "android", "-p", "fp32", "-o", tmp_path / "b", cwd=tmp_path)
    assert_one_line_error(run, 2, "aten.cumprod")
    assert not (tmp_path / "b").exists()


@pytest.mark.bad_input
def test_onnx_source_without_its_pytorch_model_says_what_android_accepts(tmp_path, digits_cnn_dir):
    built = tmp_path / "web"
    assert edge_pack("build", "digits_cnn:factory", "-t", "web", "-p", "fp32", "-o", built, cwd=digits_cnn_dir).code == 0
    run = edge_pack("build", built / "web/onnx/model.onnx", "-t", "android", "-p", "fp32", "-o", tmp_path / "b")
    assert_one_line_error(run, 2, "Hugging Face folder", "package.module:factory")


def test_bench_of_a_source_or_a_job_calibrates_int8(tmp_path, digits_cnn_dir, digits_data):
    """bench builds with the same options as build: --calibration for SOURCE, the job's calibration for a job."""
    eval_npz, calibration = digits_data
    run = edge_pack("bench", "digits_cnn:factory", "-t", "android", "-p", "int8", "--calibration", calibration,
                    "--eval", eval_npz, "--runs", "1", "--warmup", "0", "--json", cwd=digits_cnn_dir)
    assert run.code in (0, 1), run.stderr
    (row,) = run.json()["rows"]
    assert row["precision"] == "int8" and not row["error"], row
    job = tmp_path / "edge-pack.toml"
    job.write_text(f'source = "digits_cnn:factory"\ntargets = ["android"]\nprecisions = ["int8"]\n'
                   f'calibration = "{calibration}"\neval = "{eval_npz}"\nout = "bundle"\n[bench]\nruns = 1\nwarmup = 0\n')
    run = edge_pack("bench", "-c", job, "--json", cwd=digits_cnn_dir)
    assert run.code in (0, 1), run.stderr
    (row,) = run.json()["rows"]
    assert row["precision"] == "int8" and not row["error"], row


def test_a_bundle_of_an_entry_point_without_fp32_is_benched_with_source(tmp_path, digits_cnn_dir, digits_data,
                                                                        topic_classifier):
    eval_npz, calibration = digits_data
    bundle = tmp_path / "bundle"
    run = edge_pack("build", "digits_cnn:factory", "-t", "android", "-p", "dynamic-int8", "-o", bundle,
                    cwd=digits_cnn_dir)
    assert run.code == 0, run.stderr
    run = edge_pack("bench", bundle, "--eval", eval_npz, "--runs", "1", cwd=digits_cnn_dir)
    assert_one_line_error(run, 2, "PyTorch entry point", "--source ENTRY_OR_PATH")
    run = edge_pack("bench", bundle, "--source", "digits_cnn:factory", "--eval", eval_npz, "--runs", "1",
                    "--warmup", "0", "--json", cwd=digits_cnn_dir)
    assert run.code in (0, 1), run.stderr
    (row,) = run.json()["rows"]
    assert not row["error"] and "fp32 source (PyTorch)" in json.dumps(run.json()), row
    run = edge_pack("bench", bundle, "--source", topic_classifier, "--runs", "1", cwd=digits_cnn_dir)
    assert_one_line_error(run, 2, f"--source {topic_classifier} is not the source")



def test_weight_only_int8_stores_int8_and_computes_in_float(tmp_path, digits_cnn_dir):
    """weight-only-int8 (the decoders' 8-bit that keeps closest to torch) also builds for an encoder: int8
    weight tensors dequantized in the graph, float compute, validated against the source."""
    from edge_pack.converters.android import _float_compute, _tensor_types

    bundle = tmp_path / "bundle"
    run = edge_pack("build", "digits_cnn:factory", "-t", "android", "-p", "weight-only-int8", "-o", bundle,
                    cwd=digits_cnn_dir)
    assert run.code == 0, run.stderr
    (artifact,) = _manifest(bundle)["artifacts"]
    assert artifact["precision"] == "weight-only-int8" and artifact["validation"]["cosine_min"] >= 0.99
    path = bundle / "android" / "model_weight_only_int8.tflite"
    assert "INT8" in _tensor_types(path) and _float_compute(path)
