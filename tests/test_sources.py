"""Every kind of source the web target takes: a Hugging Face classifier (text and image), an ONNX file
(with and without its config beside it) and a PyTorch entry point, each measured on labeled data."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import edge_pack


def _bench(bundle: Path, *args) -> dict:
    run = edge_pack("bench", bundle, "--runs", "3", "--json", *args)
    assert run.code in (0, 1), run.stderr
    return run.json()


def test_text_classifier_keeps_its_labeled_accuracy(tmp_path, topic_classifier):
    out = tmp_path / "bundle"
    run = edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-p", "q8", "-p", "q4", "-o", out)
    assert run.code == 0, run.stderr
    assert json.loads((out / "manifest.json").read_text())["source"]["task"] == "text-classification"
    results = _bench(out, "--eval", topic_classifier.parent / "eval.jsonl")
    rows = {r["precision"]: r for r in results["rows"]}
    baseline = results["targets"]["web"]["baseline"]["quality"]
    assert baseline["name"] == "accuracy" and baseline["value"] >= 0.9  # the model learned its topics
    assert rows["fp32"]["metrics"]["accuracy"] == baseline["value"]
    assert rows["fp32"]["metrics"]["top1_agreement"] == 1.0
    assert rows["q8"]["metrics"]["accuracy"] >= baseline["value"] - 0.05
    assert "top1_agreement" in rows["q4"]["metrics"]
    assert results["passed"] is True


def test_image_classifier_with_image_eval(tmp_path, digits_classifier):
    out = tmp_path / "bundle"
    run = edge_pack("build", digits_classifier, "-t", "web", "-p", "fp32", "-p", "q8", "-p", "q4", "-o", out)
    assert run.code == 0, run.stderr
    assert (out / "web" / "preprocessor_config.json").is_file()
    recipes = json.loads((out / "web" / "quantize_config.json").read_text())["precisions"]
    assert recipes["q8"]["weight_type"] == "QUInt8"  # ViT's patch embedding is a Conv: uint8 for the browser
    results = _bench(out, "--eval", digits_classifier.parent / "eval.jsonl")
    rows = {r["precision"]: r for r in results["rows"]}
    assert results["targets"]["web"]["baseline"]["quality"]["value"] > 0.5
    assert rows["fp32"]["metrics"]["accuracy"] == results["targets"]["web"]["baseline"]["quality"]["value"]
    assert rows["q8"]["metrics"]["top1_agreement"] >= 0.9


def test_onnx_file_with_its_config_beside_it(tmp_path, topic_classifier):
    """The onnx/ folder of a Transformers.js repository: config and tokenizer one level up."""
    built = tmp_path / "first"
    assert edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", built).code == 0
    repo = built / "web"
    out = tmp_path / "from-onnx"
    run = edge_pack("build", repo / "onnx" / "model.onnx", "-t", "web", "-p", "fp32", "-p", "int8", "-o", out)
    assert run.code == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "onnx" and manifest["source"]["task"] == "text-classification"
    assert (out / "web" / "tokenizer.json").is_file()
    results = _bench(out, "--eval", topic_classifier.parent / "eval.jsonl")
    assert results["targets"]["web"]["baseline"]["origin"] == "fp32 source (onnxruntime)"
    rows = {r["precision"]: r for r in results["rows"]}
    assert rows["fp32"]["metrics"]["max_abs"] == 0.0  # the same file on the same runtime


def test_bare_onnx_file_is_a_generic_model(tmp_path, topic_classifier):
    built = tmp_path / "first"
    assert edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", built).code == 0
    bare = tmp_path / "bare" / "classifier.onnx"
    bare.parent.mkdir()
    shutil.copy(built / "web" / "onnx" / "model.onnx", bare)
    out = tmp_path / "generic"
    run = edge_pack("build", bare, "-t", "web", "-p", "fp32", "-p", "q8", "-o", out, "--json")
    assert run.code == 0, run.stderr
    manifest = run.json()
    assert manifest["source"]["task"] == "generic"
    assert {i["name"] for i in manifest["source"]["inputs"]} >= {"input_ids", "attention_mask"}
    assert not (out / "web" / "config.json").exists()


@pytest.fixture(scope="module")
def digits_eval(tmp_path_factory, digits_cnn_dir) -> Path:
    path = tmp_path_factory.mktemp("digits") / "eval.npz"
    subprocess.run([sys.executable, "digits_cnn.py", str(path)], cwd=digits_cnn_dir, check=True)
    return path


def test_pytorch_entry_point_with_npz_eval(tmp_path, digits_cnn_dir, digits_eval):
    out = tmp_path / "bundle"
    run = edge_pack("bench", "digits_cnn:factory", "-t", "web", "-p", "fp32", "-p", "q8", "-p", "q4",
                    "--eval", digits_eval, "--runs", "3", "--json", cwd=digits_cnn_dir)
    assert run.code == 0, run.stderr
    results = run.json()
    web = results["targets"]["web"]
    assert web["baseline"]["origin"] == "fp32 source (PyTorch)"
    assert web["baseline"]["quality"]["value"] > 0.85  # the CNN learned the digits
    rows = {r["precision"]: r for r in results["rows"]}
    assert rows["fp32"]["metrics"]["max_abs"] < 1e-4
    assert rows["q8"]["metrics"]["accuracy"] >= web["baseline"]["quality"]["value"] - 0.02
    # a CNN has no MatMul for 4-bit weights: skipped with the reason, not a failure
    (skipped,) = web["rejected_at_build"]
    assert skipped["precision"] == "q4" and skipped["status"] == "skipped" and "MatMul" in skipped["reason"]
    assert not out.exists()  # bench SOURCE builds into a temporary folder


def test_npz_with_a_single_array_of_any_name(tmp_path, digits_cnn_dir, digits_eval):
    import numpy as np

    data = np.load(digits_eval)
    renamed = tmp_path / "renamed.npz"
    np.savez(renamed, pixels=data["image"], labels=data["labels"])
    run = edge_pack("bench", "digits_cnn:factory", "-t", "web", "-p", "fp32", "--eval", renamed, "--runs", "1",
                    "--json", cwd=digits_cnn_dir)
    assert run.code == 0, run.stderr
    assert run.json()["targets"]["web"]["eval"].endswith("(297 samples, labeled)")
