"""Bad input: one line saying what was wrong and what to do, exit code 2, no traceback, DIR untouched."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import assert_one_line_error, edge_pack

pytestmark = pytest.mark.bad_input


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def existing_out(tmp_path) -> Path:
    """An output folder that already holds a previous bundle; failures must leave it byte for byte."""
    out = tmp_path / "out"
    (out / "web").mkdir(parents=True)
    (out / "manifest.json").write_text('{"previous": true}')
    (out / "web" / "model.onnx").write_bytes(b"previous bundle")
    return out


def _build_fails(source, out: Path, *words, extra=()):
    before = _snapshot(out) if out.exists() else None
    run = edge_pack("build", source, "-t", "web", "-o", out, *extra)
    assert_one_line_error(run, 2, *words)
    assert (_snapshot(out) if out.exists() else None) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no staging leftovers
    return run


def test_missing_path(tmp_path, existing_out):
    _build_fails(tmp_path / "nowhere", existing_out, "does not exist")


def test_folder_without_config(tmp_path, existing_out):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x")
    _build_fails(folder, existing_out, "has no config.json")


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_truncated_safetensors(tmp_path, existing_out, topic_classifier):
    folder = _copy_model(topic_classifier, tmp_path / "model")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _build_fails(folder, existing_out, "not a complete safetensors file", "download it again")


def test_random_bytes_safetensors(tmp_path, existing_out, topic_classifier):
    folder = _copy_model(topic_classifier, tmp_path / "model")
    (folder / "model.safetensors").write_bytes(os.urandom(4096))
    _build_fails(folder, existing_out, "not a complete safetensors file")


def test_random_bytes_onnx(tmp_path, existing_out):
    path = tmp_path / "model.onnx"
    path.write_bytes(os.urandom(2048))
    _build_fails(path, existing_out, "ONNX")


def test_truncated_onnx(tmp_path, existing_out, topic_classifier):
    built = tmp_path / "built"
    assert edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", built).code == 0
    data = (built / "web/onnx/model.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 3])
    _build_fails(path, existing_out, "ONNX")


def test_not_a_model_file(tmp_path, existing_out):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    _build_fails(path, existing_out, "not a model edge-pack reads")


def test_pickle_checkpoint_needs_consent_and_is_never_loaded(tmp_path, existing_out, topic_classifier):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(topic_classifier / "config.json", folder)
    marker = tmp_path / "pwned"
    # A pickle that would create the marker file if anything unpickled it.
    payload = (b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    (folder / "pytorch_model.bin").write_bytes(payload)
    _build_fails(folder, existing_out, "pickle", "--allow-pickle")
    _build_fails(folder / "pytorch_model.bin", existing_out, "pickle")
    assert not marker.exists()


def test_remote_code_needs_consent(tmp_path, existing_out, topic_classifier):
    folder = _copy_model(topic_classifier, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    _build_fails(folder, existing_out, "auto_map", "--trust-remote-code")


def test_unsupported_architecture(tmp_path, existing_out, topic_classifier):
    folder = _copy_model(topic_classifier, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BertForTokenClassification"]
    (folder / "config.json").write_text(json.dumps(config))
    _build_fails(folder, existing_out, "BertForTokenClassification", "not supported")


def test_broken_config_json(tmp_path, existing_out, topic_classifier):
    folder = _copy_model(topic_classifier, tmp_path / "model")
    (folder / "config.json").write_text("{not json")
    _build_fails(folder, existing_out, "config.json is not valid JSON")


@pytest.mark.parametrize("name, content, words", [
    ("tokenizer.model", b"not a sentencepiece model", ["tokenizer.model", "is not a SentencePiece model"]),
    ("tokenizer.json", b"{ truncated", ["tokenizer.json", "is not valid JSON"]),
])
def test_corrupt_tokenizer_file_is_named(tmp_path, existing_out, tiny_llama, name, content, words):
    source = tmp_path / "model"
    shutil.copytree(tiny_llama, source)
    (source / name).write_bytes(content)
    _build_fails(source, existing_out, str(source / name), *words)


def test_unwritable_output_folder(tmp_path, topic_classifier):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    run = edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", blocker / "out")
    assert_one_line_error(run, 2, "choose another --out")
    run = edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", blocker)
    assert_one_line_error(run, 2, "is a file")


def test_unknown_target_and_precision(tmp_path, topic_classifier):
    assert_one_line_error(edge_pack("build", topic_classifier, "-t", "xbox", "-o", tmp_path / "o"), 2,
                          "unknown target", "web")
    assert_one_line_error(edge_pack("build", topic_classifier, "-t", "web", "-p", "int3", "-o", tmp_path / "o"), 2,
                          "no precision 'int3'", "q8")
    assert not (tmp_path / "o").exists()


def test_entry_point_that_does_not_import(tmp_path):
    run = edge_pack("build", "no_such_module_xyz:factory", "-t", "web", "-o", tmp_path / "o")
    assert_one_line_error(run, 2, "cannot import no_such_module_xyz")


@pytest.fixture(scope="module")
def classifier_bundle(tmp_path_factory, topic_classifier) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b"
    assert edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", out).code == 0
    return out


@pytest.mark.parametrize("content, words", [
    ('{"text": "a fine sentence", "label": "sports"}\n{"text": broken\n', ["eval.jsonl:2", "not valid JSON"]),
    ('{"text": "a fine sentence", "label": "sports"}\n{"label": "food"}\n', ["eval.jsonl:2", '"text"']),
    ('{"text": "a fine sentence", "label": "golf"}\n', ["eval.jsonl:1", "'golf'", "sports"]),
    ('{"text": "one", "label": "sports"}\n\n{"text": "two"}\n', ["eval.jsonl:3", "label every row"]),
    ('["a list"]\n', ["eval.jsonl:1", "JSON object"]),
    ("", ["holds no rows"]),
])
def test_eval_file_with_bad_rows(tmp_path, classifier_bundle, content, words):
    path = tmp_path / "eval.jsonl"
    path.write_text(content)
    before = _snapshot(classifier_bundle)
    assert_one_line_error(edge_pack("bench", classifier_bundle, "--eval", path), 2, *words)
    assert _snapshot(classifier_bundle) == before


def test_eval_file_of_the_wrong_kind(tmp_path, classifier_bundle):
    assert_one_line_error(edge_pack("bench", classifier_bundle, "--eval", tmp_path / "none.jsonl"), 2, "does not exist")
    (tmp_path / "data.parquet").write_bytes(b"x")
    assert_one_line_error(edge_pack("bench", classifier_bundle, "--eval", tmp_path / "data.parquet"), 2,
                          ".jsonl, .csv or .npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert_one_line_error(edge_pack("bench", classifier_bundle, "--eval", tmp_path / "bad.npz"), 2, "not a readable .npz")


@pytest.mark.parametrize("content, words", [
    ("[sla]\nmin_acuracy_ratio = 0.9\n", ["edge-pack.toml:2", "sla.min_acuracy_ratio", "not a known key"]),
    ("[sla]\nmax_latency_ms = \"fast\"\n", ["edge-pack.toml:2", "finite number"]),
    ("[sla]\nmax_size_mb = 10\n[sla.web]\nmax_size = 3\n", ["edge-pack.toml:4", "sla.web.max_size"]),
    ("[slas]\nmax_size_mb = 10\n", ["edge-pack.toml:1", "slas"]),
    ("[sla\n", ["edge-pack.toml", "TOML"]),
])
def test_sla_file_errors_name_the_key_and_line(tmp_path, classifier_bundle, content, words):
    path = tmp_path / "edge-pack.toml"
    path.write_text(content)
    assert_one_line_error(edge_pack("bench", classifier_bundle, "--sla", path), 2, *words)


def test_bench_of_a_folder_that_is_not_a_bundle(tmp_path):
    assert_one_line_error(edge_pack("bench", tmp_path), 2, "not a bundle", "--target")
    (tmp_path / "manifest.json").write_text("[1, 2]")
    assert_one_line_error(edge_pack("bench", tmp_path), 2, "manifest schema")
    assert_one_line_error(edge_pack("verify", tmp_path / "nothing"), 2, "no manifest.json")
