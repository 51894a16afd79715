"""Mixed precision (issue 18): per-layer sensitivity on the target's runtime and `--precision auto`, on the
tiny embedder with one deliberately fragile layer (tests/models.py: outlier input channels that round a
4-bit block's other weights to zero)."""
from __future__ import annotations

import json

import pytest
from conftest import ROOT, assert_one_line_error, edge_pack

import models

FLOOR = 0.998  # between every layer at q4 (≈0.995) and the fragile layer alone at q8 (≈0.999)
MIXED = "mixed-4/8"


@pytest.fixture(scope="module")
def fragile_embedder():
    return models.fragile_embedder()


def _job(tmp_path, floor=FLOOR, extra=""):
    path = tmp_path / "edge-pack.toml"
    path.write_text(f"[sla]\nmin_accuracy_ratio = {floor}\n{extra}")
    return path


@pytest.fixture(scope="module")
def mixed_bundle(tmp_path_factory, fragile_embedder):
    tmp = tmp_path_factory.mktemp("mixed")
    run = edge_pack("build", fragile_embedder, "-t", "web", "-p", "q4", "-p", "auto", "-c", _job(tmp),
                    "-o", tmp / "bundle", "--json")
    assert run.code == 0, run.stderr
    return tmp / "bundle", run.json()


def test_sensitivity_ranks_the_fragile_layer_first(mixed_bundle):
    _, manifest = mixed_bundle
    found = manifest["targets"]["web"]["sensitivity"]
    ranking = [s["layer"] for s in found["layers"]]
    assert ranking[0] == models.FRAGILE_LAYER
    assert found["costliest_per_byte"][0] == models.FRAGILE_LAYER
    assert len(ranking) == 13  # 12 MatMuls and the embedding table
    first, second = found["layers"][:2]
    assert first["drift"] > 3 * second["drift"]


def test_auto_promotes_the_fragile_layer_and_passes_where_q4_fails(mixed_bundle):
    bundle, manifest = mixed_bundle
    artifacts = {a["precision"]: a for a in manifest["artifacts"]}
    mixed, q4 = artifacts[MIXED], artifacts["q4"]
    assert mixed["recipe"]["promoted"] == [models.FRAGILE_LAYER]
    builds = mixed["recipe"]["search"]["builds"]
    assert builds[0]["promoted"] == 0 and not builds[0]["passed"]  # every layer at q4 misses the floor
    assert len(builds) <= 12  # the default budget
    assert q4["validation"]["cosine_mean"] < FLOOR <= mixed["validation"]["cosine_mean"]
    assert mixed["bytes"] < q4["bytes"]  # q4 keeps the embedding table float
    assert (bundle / "web" / "onnx" / "model_mixed.onnx").is_file()
    config = json.loads((bundle / "web" / "quantize_config.json").read_text())
    assert config["precisions"][MIXED]["layers"] == {"q4": 12, "q8": 1, "float": 0}


def test_the_mix_is_measured_like_every_other_row(mixed_bundle):
    import edge_pack as api

    bundle, _ = mixed_bundle
    results = api.bench(bundle, runs=1, warmup=0, sla_path=bundle.parent / "edge-pack.toml")
    rows = {r["precision"]: r for r in results["rows"]}
    assert rows[MIXED]["verdict"]["status"] == "pass"
    assert rows["q4"]["verdict"]["status"] == "fail"
    assert rows[MIXED]["bits_per_weight"] < rows["q4"]["bits_per_weight"]
    # The ranking is in results.json and charted in the report.
    written = json.loads((bundle / "results.json").read_text())
    assert written["targets"]["web"]["sensitivity"]["layers"][0]["layer"] == models.FRAGILE_LAYER
    report = (bundle / "report.html").read_text()
    assert "the 5 layers that cost the most fidelity per byte saved" in report
    assert "layer.1 attention output dense" in report


@pytest.mark.bad_input
def test_bad_auto_inputs_are_one_line_errors(tmp_path, fragile_embedder):
    out = tmp_path / "o"
    job = _job(tmp_path)
    assert_one_line_error(edge_pack("build", fragile_embedder, "-t", "web", "-p", "auto", "--budget", "0", "-c", job,
                                    "-o", out), 2, "--budget", "at least 1")
    (tmp_path / "none").mkdir()
    none = _job(tmp_path / "none", floor=0)  # min_accuracy_ratio 0, no min_accuracy: no quality limit
    assert_one_line_error(edge_pack("build", fragile_embedder, "-t", "web", "-p", "auto", "-c", none, "-o", out), 2,
                          "quality floor", "min_accuracy_ratio")
    small = ROOT / "examples" / "release-pipeline" / "web-small.toml"  # a user's target: no [mixed] table
    assert_one_line_error(edge_pack("build", fragile_embedder, "--target-file", small, "-t", "web-small", "-p", "auto",
                                    "-c", job, "-o", out), 2, "web-small", "layer by layer")
    (tmp_path / "job").mkdir()  # the same through a job's keys: precisions = "auto" and [options] budget
    keys = _job(tmp_path / "job", extra=f'[options]\nbudget = 0\n')
    keys.write_text(f'source = "{fragile_embedder}"\ntargets = ["web"]\nprecisions = "auto"\n' + keys.read_text())
    assert_one_line_error(edge_pack("build", "-c", keys, "-o", out), 2, "budget", "at least 1")
    assert not out.exists()


def test_pi_auto_sets_each_tensor_type_through_llama_cpp(tmp_path, tiny_llama):
    """The pi target mixes Q4_K and Q8_0 tensor by tensor (llama.cpp's tensor type overrides); the file holds
    exactly the planned type of every weight tensor. The floor (same top-1 token as fp32) sits between
    every tensor at Q4_K (≈0.988 on the validation text) and every one at Q8_0 (≈0.998)."""
    from gguf import GGUFReader

    run = edge_pack("build", tiny_llama, "-t", "pi", "-p", "auto", "--budget", "6", "-c", _job(tmp_path, 0.993),
                    "-o", tmp_path / "bundle", "--json")
    assert run.code == 0, run.stderr
    manifest = run.json()
    (mixed,) = manifest["artifacts"]
    assert mixed["precision"] == MIXED
    search = mixed["recipe"]["search"]
    assert not search["builds"][0]["passed"] and search["builds"][1]["passed"]  # all Q4_K fails, all Q8_0 passes
    assert len(search["builds"]) <= 6
    promoted = set(mixed["recipe"]["promoted"])
    ranked = manifest["targets"]["pi"]["sensitivity"]["layers"]
    assert promoted and len(promoted) < len(ranked)
    held = {t.name: t.tensor_type.name for t in GGUFReader(str(tmp_path / "bundle" / mixed["files"][0]["path"])).tensors
            if len(t.shape) >= 2}
    assert set(held) == {s["layer"] for s in ranked}
    assert {n for n, kind in held.items() if kind == "Q8_0"} == promoted
    assert {kind for n, kind in held.items() if n not in promoted} <= {"Q4_K", "Q6_K"}  # as q4_k_m stores them
    assert mixed["validation"]["same_top1"] >= 0.993


def test_without_a_job_the_floor_is_the_targets_validation_floor(tmp_path, fragile_embedder):
    run = edge_pack("build", fragile_embedder, "-t", "web", "-p", "auto", "-o", tmp_path / "bundle", "--json",
                    cwd=tmp_path)
    assert run.code == 0, run.stderr
    (mixed,) = run.json()["artifacts"]
    search = mixed["recipe"]["search"]
    assert "validation floor (cosine_min ≥ 0.9)" in search["floor"]
    assert search["builds"][0]["passed"] and mixed["recipe"]["promoted"] == []  # every layer at q4 clears 0.9


def test_a_mix_no_smaller_than_the_best_uniform_candidate_is_said_and_not_shipped(tmp_path, fragile_embedder):
    """With two builds the search can only try every layer at q4 (misses the floor) and every one at q8
    (passes): that mix stores the table in blocks with scales, so it is larger than the uniform q8 beside it,
    which meets the floor too. The build says so, in its output and the manifest, and ships no mix."""
    run = edge_pack("build", fragile_embedder, "-t", "web", "-p", "q8", "-p", "auto", "--budget", "2",
                    "-c", _job(tmp_path), "-o", tmp_path / "bundle", "--json")
    assert run.code == 0, run.stderr
    manifest = run.json()
    assert [a["precision"] for a in manifest["artifacts"]] == ["q8"]
    (rejected,) = manifest["rejected"]
    assert rejected["precision"] == MIXED and rejected["status"] == "skipped"
    assert rejected["reason"].startswith("nothing smaller than the best uniform candidate, q8 (")
    said = manifest["targets"]["web"]["mixed"]
    assert said["outcome"] == "not smaller than a uniform candidate" and said["than"] == "q8"
    assert said["statement"] == rejected["reason"]
    assert [b["passed"] for b in said["builds"]] == [False, True]
    assert not (tmp_path / "bundle" / "web" / "onnx" / "model_mixed.onnx").exists()


def test_a_latency_limit_times_every_search_build(tmp_path, fragile_embedder):
    """With max_latency_ms in the SLA each search build is timed on the target's runtime and passes only
    within it; a limit no build can meet (a microsecond) leaves no mix, said as such."""
    job = _job(tmp_path, extra="max_latency_ms = 0.001\n")
    run = edge_pack("build", fragile_embedder, "-t", "web", "-p", "auto", "--budget", "2", "-c", job,
                    "-o", tmp_path / "bundle", "--json")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    (rejected,) = manifest["rejected"]
    assert rejected["status"] == "failed" and "within p50 0.001 ms" in rejected["reason"], run.stderr
    said = manifest["targets"]["web"]["mixed"]
    assert said["outcome"] == "no mix passed"
    assert len(said["builds"]) == 2 and all(b["p50_ms"] > 0.001 and not b["passed"] for b in said["builds"])
