"""The pi target end to end on real models and the real runtime: a tiny Llama trained here and MiniLM,
converted by llama.cpp's converter, quantized by llama.cpp's quantizer, loaded and measured by llama.cpp
(llama-cpp-python) against the fp32 source."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, assert_one_line_error, edge_pack

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make install builds it)")
gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")

PRECISIONS = ["f32", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]
FILE_TYPES = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0", "q6_k": "Q6_K", "q5_k_m": "Q5_K_M", "q4_k_m": "Q4_K_M",
              "q4_0": "Q4_0"}


def _build_all(source, out: Path) -> dict:
    run = edge_pack("build", source, "--target", "pi", *[a for p in PRECISIONS for a in ("-p", p)], "--out", out)
    assert run.code == 0, run.stderr
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def llama_bundle(tmp_path_factory, tiny_llama) -> Path:
    out = tmp_path_factory.mktemp("llama") / "bundle"
    _build_all(tiny_llama, out)
    return out


@pytest.fixture(scope="module")
def llama_results(llama_bundle, tiny_llama) -> dict:
    run = edge_pack("bench", llama_bundle, "--eval", tiny_llama.parent / "eval.txt", "--runs", "3", "--json")
    assert run.code in (0, 1), run.stderr  # 1: a candidate below the default SLA is a verdict, not an error
    return run.json()


@pytest.fixture(scope="module")
def minilm_bundle(tmp_path_factory, minilm) -> Path:
    out = tmp_path_factory.mktemp("minilm-pi") / "bundle"
    _build_all(minilm, out)
    return out


def test_decoder_files_are_what_they_are_named(llama_bundle):
    manifest = json.loads((llama_bundle / "manifest.json").read_text())
    artifacts = {a["precision"]: a for a in manifest["artifacts"]}
    assert list(artifacts) == PRECISIONS and not manifest["rejected"]
    for precision, artifact in artifacts.items():
        (entry,) = artifact["files"]
        assert entry["path"].startswith("pi/tiny-llama-") and entry["path"].endswith(f"-{FILE_TYPES[precision]}.gguf")
        assert len(entry["sha256"]) == 64
        reader = gguf.GGUFReader(str(llama_bundle / entry["path"]))
        # the tokenizer and its special tokens travel inside the file
        assert reader.get_field("tokenizer.ggml.model").contents() == "llama"
        assert len(reader.get_field("tokenizer.ggml.tokens").contents()) == 4096
        types = artifact["recipe"]["tensor_types"]
        # what the file really holds, read back from it: the main type is the one asked for
        main = max(types, key=lambda k: types[k]["share"])
        assert main == {"q4_k_m": "Q4_K", "q5_k_m": "Q5_K"}.get(precision, FILE_TYPES[precision]), (precision, types)
        assert artifact["recipe"]["rows_not_multiple_of_256"] == 0  # hidden 256, FFN 768
    sizes = [artifacts[p]["bytes"] for p in PRECISIONS]
    assert sizes == sorted(sizes, reverse=True), sizes  # ordered as the bits say
    bpw = [artifacts[p]["recipe"]["bits_per_weight"] for p in PRECISIONS]
    # the output layer (a quarter of this tiny model) stays in 6 bits in q4_k_m and q4_0, as llama.cpp chooses
    assert bpw == sorted(bpw, reverse=True) and bpw[0] == 32 and 4.5 <= bpw[-1] < 5.5, bpw
    assert artifacts["q8_0"]["recipe"]["method"] == "llama_cpp.llama_model_quantize"
    assert artifacts["f32"]["validation"]["cosine_min"] > 0.9999
    assert edge_pack("verify", llama_bundle).code == 0


def test_decoder_quality_against_the_fp32_source(llama_results):
    rows = {r["precision"]: r["metrics"] for r in llama_results["rows"]}
    base = llama_results["targets"]["pi"]["baseline"]["metrics"]
    assert 1.5 < base["perplexity"] < 4096 / 8, base  # trained: far below the 4096 of a uniform guess
    assert base["scored_tokens"] > 2000
    # llama.cpp F32 reproduces the PyTorch model; F16 nearly
    assert abs(rows["f32"]["perplexity"] / base["perplexity"] - 1) < 1e-3
    assert rows["f32"]["kl_divergence"] < 1e-4 and rows["f32"]["same_top1"] > 0.995
    assert abs(rows["q8_0"]["perplexity"] / rows["f16"]["perplexity"] - 1) < 0.01
    # Orderings with a clear gap only (the fixture checks the margin when it is built, tests/models.py):
    # 8 bits move the distributions far less than 4 bits. Which 4-bit type is closer depends on the weights.
    for four_bit in ("q4_k_m", "q4_0"):
        assert rows["q8_0"]["kl_divergence"] * 4 < rows[four_bit]["kl_divergence"], (four_bit, rows)
        assert rows[four_bit]["same_top1"] <= rows["q8_0"]["same_top1"] <= 1
    assert rows["f16"]["kl_divergence"] <= rows["q8_0"]["kl_divergence"] * 1.5
    assert rows["q4_k_m"]["kl_divergence_p99"] >= rows["q4_k_m"]["kl_divergence"]


def test_decoder_speed_and_resources(llama_results):
    for row in llama_results["rows"]:
        found = row["metrics"]
        assert found["threads"] == 1 and row["threads"] == 1
        assert found["pp_tokens_per_s"] > 0 and found["tg_tokens_per_s"] > 0
        assert found["pp_tokens"] == 128 and found["tg_tokens"] == 64
        assert row["load_ms"] > 0 and row["peak_rss_mb"] > 10 and row["latency_runs"] == 3
        assert row["runtime"].startswith("llama.cpp via llama-cpp-python")
        assert row["host"]["cpu"] and row["host"]["ram_mb"] > 0 and row["host"]["os"]
        estimates = row["estimates"]
        assert set(estimates) == {"pi4", "pi5"}
        # the bandwidth ceiling: bandwidth / bytes, larger for smaller files, Pi 5 above Pi 4
        assert estimates["pi5"]["tg_tokens_per_s"] == pytest.approx(11.4e9 / row["bytes"])
        assert estimates["pi5"]["tg_tokens_per_s"] > estimates["pi4"]["tg_tokens_per_s"]
        assert "measured_ratio" not in estimates["pi5"]  # measured here, not on a Pi
    quality = llama_results["targets"]["pi"]["baseline"]["quality"]
    assert quality["name"] == "same top-1" and quality["value"] == 1.0


def test_verdict_table_shows_decoder_columns(llama_bundle, tiny_llama):
    run = edge_pack("bench", llama_bundle, "-p", "q8_0", "--eval", tiny_llama.parent / "eval.txt", "--runs", "2")
    assert run.code in (0, 1), run.stderr
    for words in ("ppl", "pp / tg tok/s", "est. tg tok/s", "Pi 4 / Pi 5", "KL ", "an estimate, not a measurement",
                  "baseline perplexity"):
        assert words in run.stdout, words


def test_embedder_every_precision(minilm_bundle):
    manifest = json.loads((minilm_bundle / "manifest.json").read_text())
    artifacts = {a["precision"]: a for a in manifest["artifacts"]}
    assert list(artifacts) == PRECISIONS
    assert artifacts["q8_0"]["validation"]["cosine_min"] >= 0.99
    # MiniLM's rows are 384 wide: k-quants fall back to other types, and the recipe says so
    q4 = artifacts["q4_k_m"]["recipe"]
    assert q4["rows_not_multiple_of_256"] > 0
    assert q4["tensor_types"].get("Q4_K", {"share": 0})["share"] < 0.5, q4["tensor_types"]
    sizes = [artifacts[p]["bytes"] for p in ("f32", "f16", "q8_0")]
    assert sizes == sorted(sizes, reverse=True)


def test_embedder_bench(minilm_bundle):
    run = edge_pack("bench", minilm_bundle, "-p", "f16", "-p", "q8_0", "-p", "q4_k_m",
                    "--eval", ROOT / "examples/demo/eval.jsonl", "--runs", "3", "--json")
    assert run.code in (0, 1), run.stderr
    rows = {r["precision"]: r for r in run.json()["rows"]}
    assert rows["f16"]["metrics"]["cosine_mean"] > 0.999
    assert rows["q8_0"]["metrics"]["cosine_mean"] >= 0.99
    assert rows["q4_k_m"]["metrics"]["cosine_mean"] < rows["q8_0"]["metrics"]["cosine_mean"]
    for row in rows.values():
        assert 0 <= row["metrics"]["retrieval_agreement"] <= 1
        assert row["latency_p50_ms"] > 0 and row["runtime"].endswith("(embedder)")
        assert not row.get("estimates")  # a ceiling for generation means nothing for an embedder


@pytest.mark.bad_input
def test_a_model_llama_cpp_cannot_run_is_refused_naming_targets_that_fit(tmp_path, digits_cnn_dir):
    run = edge_pack("build", "digits_cnn:factory", "--target", "pi", "--out", tmp_path / "b", cwd=digits_cnn_dir)
    assert_one_line_error(run, 2, "pi", "targets that fit: android, ios, web")
    assert not (tmp_path / "b").exists()


@pytest.mark.bad_input
def test_target_all_skips_pi_with_the_reason(tmp_path, digits_cnn_dir):
    run = edge_pack("build", "digits_cnn:factory", "--target", "all", "-o", tmp_path / "b", cwd=digits_cnn_dir)
    assert run.code == 0, run.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "pi" not in manifest["targets"] and "web" in manifest["targets"]
    (skip,) = [r for r in manifest["rejected"] if r["target"] == "pi"]
    assert skip["status"] == "skipped" and "PyTorch entry point" in skip["reason"]
    assert "skipped" in run.stdout and "llama.cpp" in run.stdout


@pytest.mark.bad_input
def test_imatrix_needs_calibration_text(tmp_path, tiny_llama):
    run = edge_pack("build", tiny_llama, "-t", "pi", "-p", "q4_k_m", "--imatrix", tmp_path / "missing.txt",
                    "-o", tmp_path / "b")
    assert run.code == 2 and "missing.txt" in run.stderr


def test_imatrix_guides_the_quantizer(tmp_path, tiny_llama, llama_bundle):
    out = tmp_path / "imatrix"
    run = edge_pack("build", tiny_llama, "-t", "pi", "-p", "q4_k_m", "--imatrix", tiny_llama.parent / "eval.txt",
                    "-o", out)
    assert run.code == 0, run.stderr
    (artifact,) = json.loads((out / "manifest.json").read_text())["artifacts"]
    imatrix = artifact["recipe"]["imatrix"]
    assert imatrix["tensors"] == 2 * 7 + 1  # q k v o gate up down per layer, and the output layer
    assert imatrix["tokens"] > 1000 and imatrix["text"] == "eval.txt"
    plain = next(a for a in json.loads((llama_bundle / "manifest.json").read_text())["artifacts"]
                 if a["precision"] == "q4_k_m")
    assert artifact["files"][0]["sha256"] != plain["files"][0]["sha256"]
    assert artifact["files"][0]["bytes"] == plain["files"][0]["bytes"]  # same types, other rounding
