"""Several models in one job and the cascade between them (issue 15, sections 2 and 3), through the CLI as a
user runs it, on two real labeled text classifiers of different sizes (tests/models.py: the topic classifier
and a smaller one that saw fewer words): one build of every model × precision, one verdict with a model
column and a recommendation across models, every quality against the baseline model's fp32, and the cascade
small → large as a candidate row judged by the same SLA. Bad job files are one-line errors with their line."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT, assert_one_line_error, edge_pack
from edge_pack.cascade import split
from edge_pack.config import load_config
from edge_pack.models import Service, StageRef


def _job(tmp_path, small, large, extra: str = "", cascade: str | None = None, name: str = "edge-pack.toml"):
    path = tmp_path / name
    path.write_text(f"""
baseline = "large"
targets = ["web"]
precisions = ["fp32", "q8"]
eval = "{large.parent / 'eval.jsonl'}"
out = "dist"
[[models]]
name = "small"
source = "{small}"
[[models]]
name = "large"
source = "{large}"
[bench]
runs = 4
warmup = 0
[sla]
min_accuracy_ratio = 0.9
[cost]
requests_per_month = 1_000_000
price_per_device_hour = 0.05
{extra}
[cascade]
{cascade or 'first = "small:q8"' + chr(10) + 'fallback = "large:fp32"'}
""")
    return path


@pytest.fixture(scope="module")
def job(tmp_path_factory, small_topic_classifier, topic_classifier):
    folder = tmp_path_factory.mktemp("lineup")
    _job(folder, small_topic_classifier, topic_classifier)
    run = edge_pack("bench", cwd=folder)  # builds both models first: dist/ is not there yet
    assert run.code == 0, run.stderr + run.stdout
    results = json.loads((folder / "dist" / "results.json").read_text())
    return {"folder": folder, "run": run, "results": results}


def test_one_bench_measures_every_model_and_precision_against_the_baseline_models_fp32(job):
    results = job["results"]
    rows = [r for r in results["rows"] if not r["cascade"]]
    assert sorted((r["model"], r["precision"]) for r in rows) == [("large", "fp32"), ("large", "q8"),
                                                                 ("small", "fp32"), ("small", "q8")]
    web = results["targets"]["web"]
    base = web["baseline"]["quality"]["value"]
    assert web["baseline"]["origin"].endswith("of large") and results["baseline"] == "large"
    assert set(results["models"]) == {"small", "large"}
    for row in rows:
        # every ratio is against large's fp32, on the same samples, whichever model the row is
        assert row["quality"]["baseline"] == base
        assert row["quality"]["ratio"] == pytest.approx(row["quality"]["value"] / base)
        assert len(row["samples"]) == 80 and all(0 < s["confidence"] <= 1 for s in row["samples"])
        assert row["quality"]["value"] == pytest.approx(sum(s["correct"] for s in row["samples"]) / 80)
    small = {r["precision"]: r for r in rows if r["model"] == "small"}
    # the small model lost 1 - 0.762 of large's fp32 accuracy: it fails the 0.9 floor, as decided by the SLA
    assert small["fp32"]["quality"]["value"] < 0.9 * base
    assert small["fp32"]["verdict"]["status"] == "fail"


def test_the_verdict_has_a_model_column_and_a_recommendation_across_models(job):
    web = job["results"]["targets"]["web"]
    rows = {f"{r['model']}:{r['precision']}": r for r in job["results"]["rows"] if not r["cascade"]}
    passing = [k for k, r in rows.items() if r["verdict"]["status"] == "pass"]
    cheapest = min(passing, key=lambda k: (rows[k]["cost_per_month"], rows[k]["bytes"]))
    assert web["recommended"] == cheapest and cheapest.startswith("large:")
    model, precision = cheapest.split(":")
    text = web["decision"]["text"]
    assert text.startswith(f"web: ship {model} {precision} — ") and " vs small " in text
    out = job["run"].stdout
    header = next(line for line in out.splitlines() if "precision" in line and "target" in line)
    assert "model" in header
    assert "large" in out and "small" in out and "★ ship" in out
    report = (job["folder"] / "dist" / "report.html").read_text()
    assert "<th class=\"text\">model</th>" in report and "Pareto front" in report


def test_the_cascade_is_a_candidate_row_judged_by_the_sla(job):
    results = job["results"]
    cascade = next(r for r in results["rows"] if r["cascade"])
    found = cascade["cascade"]
    assert cascade["model"] == "cascade" and cascade["precision"] == "small:q8 → large:fp32"
    # the threshold was picked on one half and every figure comes from the other
    assert found["picked_on"] + found["reported_on"] == 80 and found["picked_on"] > 0
    assert cascade["quality"]["value"] == found["point"]["accuracy"]
    # routing the small model's unsure answers to the large one beats the small model alone on the same half
    assert found["first_alone"]["escalated"] == 0 and found["fallback_alone"]["escalated"] == 1
    assert found["first_alone"]["accuracy"] < found["point"]["accuracy"] <= found["fallback_alone"]["accuracy"]
    assert 0 < found["point"]["escalated"] < 1
    # the pick aimed at the SLA's floor (0.9 of large's fp32 on the half it was picked on); the verdict is the SLA's
    base = {s["id"]: s["correct"] for s in results["targets"]["web"]["baseline"]["samples"]}
    pick, report = split(sorted(base))
    assert found["target_accuracy"] == pytest.approx(0.9 * sum(base[i] for i in pick) / len(pick))
    assert cascade["quality"]["baseline"] == pytest.approx(sum(base[i] for i in report) / len(report))
    expected_pass = cascade["quality"]["ratio"] >= 0.9
    assert cascade["verdict"]["status"] == ("pass" if expected_pass else "fail")
    # expected latency: the first stage always runs, the fallback for the escalated share
    rows = {(r["model"], r["precision"]): r for r in results["rows"]}
    first, fallback = rows[("small", "q8")], rows[("large", "fp32")]
    assert cascade["latency_p50_ms"] == pytest.approx(first["latency_p50_ms"]
                                                      + found["point"]["escalated"] * fallback["latency_p50_ms"])
    assert cascade["bytes"] == first["bytes"] + fallback["bytes"]  # both stages ship on the device
    assert results["targets"]["web"]["recommended"] != cascade["precision"]  # a release zip holds one candidate
    assert "cascade small:q8 → large:fp32" in job["run"].stdout
    assert 'aria-label="web-cascade"' in (job["folder"] / "dist" / "report.html").read_text()


def test_the_job_bundle_verifies_and_ships_the_recommended_models_artifact(job):
    dist = job["folder"] / "dist"
    assert edge_pack("verify", dist).code == 0
    assert edge_pack("verify", dist / "small").code == 0  # each model's bundle is a bundle of its own
    recommended = job["results"]["targets"]["web"]["recommended"]
    model, precision = recommended.split(":")
    with zipfile.ZipFile(dist / f"{model}-web.zip") as archive:
        inner = json.loads(archive.read("manifest.json"))
    assert [a["precision"] for a in inner["artifacts"]] == [precision]
    # an edited verdict no longer verifies
    results = dist / "results.json"
    original = results.read_text()
    results.write_text(original.replace('"status": "fail"', '"status": "pass"'))
    try:
        assert edge_pack("verify", dist).code == 1
    finally:
        results.write_text(original)


@pytest.mark.bad_input
def test_a_cascade_naming_a_precision_not_built_fails_before_measuring(job, tmp_path, small_topic_classifier,
                                                                      topic_classifier):
    dist = job["folder"] / "dist"
    before = (dist / "results.json").read_bytes()
    bad = _job(tmp_path, small_topic_classifier, topic_classifier, cascade='first = "small:q4"\nfallback = "source"')
    text = bad.read_text().replace('precisions = ["fp32", "q8"]\n', "")  # the job leaves precisions to the target
    bad.write_text(text)
    run = edge_pack("bench", dist, "-c", bad)
    line = text.splitlines().index('first = "small:q4"') + 1
    assert_one_line_error(run, 2, f"edge-pack.toml:{line}:", "small:q4", "no q4 artifact", "built: fp32, q8")
    assert (dist / "results.json").read_bytes() == before


def test_models_and_cascade_keys_are_read(tmp_path):
    path = tmp_path / "edge-pack.toml"
    path.write_text("""
baseline = "large"
[[models]]
name = "small"
source = "m/small"
[[models]]
name = "large"
source = "m/large"
[cascade]
first = "small:q4_k_m"
fallback = { name = "api", accuracy_from = "large:fp32", cost_per_request = 0.002, latency_ms = 800 }
""")
    config = load_config(path)
    assert [(m.name, m.source) for m in config.models] == [("small", str(tmp_path / "m/small")),
                                                           ("large", str(tmp_path / "m/large"))]
    assert config.baseline == "large" and config.source is None
    assert config.cascade.first == StageRef("small", "q4_k_m")
    assert config.cascade.fallback == Service("api", StageRef("large", "fp32"), 0.002, 800.0)
    single = tmp_path / "single.toml"
    single.write_text('source = "m/one"\n[cascade]\nfirst = "q8"\nfallback = "source"\n')
    config = load_config(single)
    assert config.models == () and config.cascade.first == StageRef(None, "q8")
    assert config.cascade.fallback == StageRef(None, "source")


MODELS = '[[models]]\nname = "small"\nsource = "m/small"\n[[models]]\nname = "large"\nsource = "m/large"\n'


@pytest.mark.bad_input
@pytest.mark.parametrize("content, line, words", [
    ('baseline = "huge"\n' + MODELS, 1, ["baseline", "'huge'", "no [[models]] has", "small, large"]),
    ('baseline = "small"\n[[models]]\nname = "small"\nsource = "a"\n[[models]]\nname = "small"\nsource = "b"\n', 6,
     ["models.1.name", "'small'", "earlier model"]),
    ('baseline = "small"\n[[models]]\nname = "small"\nsource = "a"\n[[models]]\nname = "large"\n', 5,
     ["models.1", "no source"]),
    ('source = "m/one"\nbaseline = "small"\n' + MODELS, 1, ["source", "[[models]]", "both"]),
    (MODELS, 1, ["baseline", "small, large"]),
    ('baseline = "large"\n' + MODELS + '[cascade]\nfirst = "tiny:q8"\nfallback = "large:fp32"\n', 9,
     ["cascade.first", "'tiny'", "no [[models]] has"]),
    ('baseline = "large"\n' + MODELS + '[cascade]\nfirst = "small:q8"\nfallback = { name = "api", latency_ms = 800 }\n',
     10, ["cascade.fallback", "accuracy_from", "cost_per_request"]),
    ('baseline = "large"\nprecisions = ["q8"]\n' + MODELS + '[cascade]\nfirst = "small:q4"\nfallback = "large:q8"\n',
     10, ["cascade.first", "'q4'", "does not build"]),
    ('baseline = "large"\n' + MODELS + '[cascade]\nfirst = "q8"\nfallback = "large:fp32"\n', 9,
     ["cascade.first", "names no model", "small:q8"]),
])
def test_bad_job_files_are_one_line_errors_with_their_line(tmp_path, content, line, words):
    (tmp_path / "edge-pack.toml").write_text(content)
    run = edge_pack("build", cwd=tmp_path)
    assert_one_line_error(run, 2, f"edge-pack.toml:{line}:", *words)
    assert not (tmp_path / "dist").exists()


def test_a_stated_service_fallback_prices_and_times_the_escalated_share(job, tmp_path):
    dist = tmp_path / "dist"
    shutil.copytree(job["folder"] / "dist", dist)
    config = job["folder"] / "edge-pack.toml"
    text = config.read_text().replace('fallback = "large:fp32"', 'fallback = { name = "api", accuracy_from = '
                                      '"large:fp32", cost_per_request = 0.002, latency_ms = 800 }')
    (tmp_path / "service.toml").write_text(text.replace("[sla]\n", "[sla]\nmax_latency_ms = 50\n"))
    run = edge_pack("bench", dist, "-c", tmp_path / "service.toml", "--json")
    assert run.code == 0, run.stderr  # the cascade fails its latency (below); large still ships
    results = run.json()
    rows = {(r["model"], r["precision"]): r for r in results["rows"]}
    cascade, first = rows[("cascade", "small:q8 → api")], rows[("small", "q8")]
    share = cascade["cascade"]["point"]["escalated"]
    assert cascade["latency_p50_ms"] == pytest.approx(first["latency_p50_ms"] + share * 800)
    assert cascade["cost_per_month"] == pytest.approx(first["cost_per_month"] + 1_000_000 * share * 0.002)
    assert cascade["bytes"] == first["bytes"]  # the service is not on the device
    # it answers as large's fp32 does: the same routed accuracy as the cascade to large:fp32 on the device
    device = next(r for r in job["results"]["rows"] if r["cascade"])
    assert cascade["quality"]["value"] == device["quality"]["value"]
    assert cascade["verdict"]["status"] == "fail" and any("p50" in r for r in cascade["verdict"]["reasons"])


def test_job_bundles_of_other_targets_merge_into_one_verdict(job, tmp_path, small_topic_classifier,
                                                             topic_classifier):
    part = tmp_path / "part"
    part.mkdir()
    config = _job(part, small_topic_classifier, topic_classifier,
                  cascade='first = "small:fp32"\nfallback = "large:fp32"')
    config.write_text(config.read_text().replace('targets = ["web"]', 'targets = ["web-small"]\ntarget_files = '
                                                 f'["{ROOT / "examples/release-pipeline/web-small.toml"}"]')
                      .replace('precisions = ["fp32", "q8"]', 'precisions = ["fp32"]'))
    run = edge_pack("bench", cwd=part)
    assert run.code == 0, run.stderr
    out = tmp_path / "merged"
    run = edge_pack("bundle", "merge", job["folder"] / "dist", part / "dist", "--out", out, "--json")
    assert run.code == 0, run.stderr
    merged = run.json()["results"]
    assert set(merged["targets"]) == {"web", "web-small"} and merged["unmeasured"] == []
    assert {r["model"] for r in merged["rows"] if r["target"] == "web-small"} == {"small", "large", "cascade"}
    assert edge_pack("verify", out).code == 0
    assert {p.name for p in out.glob("*.zip")} == {p.name for d in (job["folder"] / "dist", part / "dist")
                                                   for p in d.glob("*.zip")}
    assert edge_pack("bundle", "merge", job["folder"] / "dist", out, "--out", tmp_path / "again").code == 2


def test_a_cascade_of_one_source_routes_the_digits_cnn_to_its_fp32_source(tmp_path, digits_cnn_dir):
    subprocess.run([sys.executable, "digits_cnn.py", str(tmp_path / "eval.npz"), str(tmp_path / "cal.npz")],
                   cwd=digits_cnn_dir, check=True)
    (tmp_path / "job.toml").write_text("""
source = "digits_cnn:factory"
targets = ["web"]
precisions = ["fp32", "q8"]
eval = "eval.npz"
out = "dist"
[bench]
runs = 2
warmup = 0
[cascade]
first = "q8"
fallback = "source"
""")
    run = edge_pack("bench", "-c", tmp_path / "job.toml", "--json", cwd=digits_cnn_dir)
    assert run.code == 0, run.stderr
    results = run.json()
    web = results["targets"]["web"]
    cascade = next(r for r in results["rows"] if r["cascade"])
    q8 = next(r for r in results["rows"] if r["precision"] == "q8")
    assert cascade["precision"] == "q8 → source" and cascade["model"] == "cascade"
    # recomputed from the rows' own samples: q8's answer when it is sure enough, else the fp32 source's
    first = {s["id"]: s for s in q8["samples"]}
    source = {s["id"]: s["correct"] for s in web["baseline"]["samples"]}
    _, report = split(sorted(first))
    threshold = cascade["cascade"]["threshold"]
    right = [first[i]["correct"] if first[i]["confidence"] >= threshold else source[i] for i in report]
    assert cascade["quality"]["value"] == pytest.approx(sum(right) / len(report))
    assert cascade["cascade"]["reported_on"] == len(report) and len(first) == 297


def test_the_demo_cascade_job_reads():
    config = load_config(ROOT / "examples" / "pytorch-entry-point" / "digits-cascade.toml")
    assert [m.source for m in config.models] == ["digits_cnn:small_factory", "digits_cnn:factory"]
    assert config.baseline == "large" and config.cascade.first == StageRef("small", "q8")
    assert config.cascade.fallback == Service("api", StageRef("large", "fp32"), 0.0001, 120.0)


def test_two_decoders_and_a_cascade_answer_a_task_file_through_llama_cpp(tmp_path, small_tiny_llama, tiny_llama):
    """The same job for text generation: two tiny Llamas (one layer and two) on pi (llama.cpp), judged on a
    task file's answers against the large model's fp32 answers in torch, the cascade routing on the mean
    token probability of each generated answer (or the choice margin)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make install builds it)")
    from test_task_bench import NEW_TOKENS, TINY_ROWS

    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TINY_ROWS))
    (tmp_path / "edge-pack.toml").write_text(f"""
baseline = "large"
targets = ["pi"]
precisions = ["f16", "q4_k_m"]
eval = "tasks.jsonl"
out = "dist"
[[models]]
name = "small"
source = "{small_tiny_llama}"
[[models]]
name = "large"
source = "{tiny_llama}"
[bench]
runs = 2
warmup = 0
max_new_tokens = {NEW_TOKENS}
[sla]
min_accuracy_ratio = 0.5
[cascade]
first = "small:q4_k_m"
fallback = "large:f16"
""")
    run = edge_pack("bench", "--json", cwd=tmp_path)
    assert run.code in (0, 1), run.stderr  # 1: no candidate meets the SLA, a verdict like any other
    results = run.json()
    pi = results["targets"]["pi"]
    base = {s["id"]: s["correct"] for s in pi["baseline"]["samples"]}
    assert pi["baseline"]["origin"].endswith("of large") and len(base) == len(TINY_ROWS)
    rows = {(r["model"], r["precision"]): r for r in results["rows"]}
    assert set(rows) == {("small", "f16"), ("small", "q4_k_m"), ("large", "f16"), ("large", "q4_k_m"),
                         ("cascade", "small:q4_k_m → large:f16")}
    for (model, _), row in rows.items():
        assert row["quality"]["name"] == "task accuracy" and row["error"] is None
        assert row["quality"]["baseline"] == pytest.approx(
            pi["baseline"]["quality"]["value"] if model != "cascade" else
            sum(base[i] for i in split(sorted(base))[1]) / len(split(sorted(base))[1]))
    # the cascade, recomputed from the two stages' own samples on the reported half
    cascade = rows[("cascade", "small:q4_k_m → large:f16")]
    first = {s["id"]: s for s in rows[("small", "q4_k_m")]["samples"]}
    fallback = {s["id"]: s["correct"] for s in rows[("large", "f16")]["samples"]}
    _, report = split(sorted(first))
    threshold = cascade["cascade"]["threshold"]
    right = [first[i]["correct"] if first[i]["confidence"] >= threshold else fallback[i] for i in report]
    assert cascade["quality"]["value"] == pytest.approx(sum(right) / len(report))
    assert cascade["verdict"]["status"] in ("pass", "fail")
    if pi["recommended"]:
        assert pi["recommended"].split(":")[0] in ("small", "large")
