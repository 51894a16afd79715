"""The gate passes only what it measured (issue 14): non-finite outputs fail, a ratio of nothing is an error,
noisy timings make a latency limit unverified instead of flipping, identical files are measured once,
bits per weight come from the file, and results edited after the bench do not verify or merge. One web
bundle of the topic classifier serves them all; the runtimes that misbehave are test doubles wrapping the
real onnxruntime runner (tests/runtime_doubles/), since no real runtime does so on demand."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, edge_pack

TESTS = ROOT / "tests"
DOUBLES = {"PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def gated(tmp_path_factory, topic_classifier):
    """fp32, q8, int8 (the same bytes as q8 for a model without Conv) and q4 of the topic classifier, for a
    copy of the web target whose runtimes include the doubles."""
    folder = tmp_path_factory.mktemp("gate")
    target = folder / "gated.toml"
    web = (ROOT / "targets" / "web.toml").read_text()
    target.write_text(re.sub(r"^runtimes = \[.*\]$",
                             'runtimes = ["ort", "runtime_doubles.nan_outputs", "runtime_doubles.noisy"]',
                             web.replace('name = "web"', 'name = "gated"'), flags=re.MULTILINE))
    out = folder / "bundle"
    run = edge_pack("build", topic_classifier, "--target-file", target, "-t", "gated", "-p", "fp32", "-p", "q8",
                    "-p", "int8", "-p", "q4", "-o", out)
    assert run.code == 0, run.stderr
    return out, target, topic_classifier.parent / "eval.jsonl"


def bench(gated, tmp_path, sla: str, *args):
    out, target, eval_path = gated
    (tmp_path / "edge-pack.toml").write_text(sla)
    return edge_pack("bench", out, "--target-file", target, "--eval", eval_path, "--sla", tmp_path / "edge-pack.toml",
                     *args, env=DOUBLES)


def test_a_candidate_with_non_finite_outputs_fails(gated, tmp_path):
    """item 2: NaN outputs gave a NaN ratio, `ratio < floor` is False for NaN, and the candidate passed."""
    run = bench(gated, tmp_path, "[sla]\nmin_accuracy_ratio = 0.9\n", "--runtime", "runtime_doubles.nan_outputs",
                "--runs", "2", "--json")
    assert run.code == 0, run.stderr  # fp32 still ships
    rows = {r["precision"]: r for r in run.json()["rows"]}
    for name in ("q8", "int8"):  # int8 is q8's bytes: measured once, failed once
        assert rows[name]["verdict"]["status"] == "fail"
        found = re.search(r"outputs are not finite numbers \(NaN or inf\) on (\d+) of (\d+) eval inputs",
                          rows[name]["verdict"]["reasons"][0])
        assert found and int(found[1]) == (int(found[2]) + 1) // 2, rows[name]["verdict"]  # every other one
    assert rows["fp32"]["verdict"]["status"] == "pass"


def test_a_ratio_of_a_zero_baseline_is_an_error_that_names_min_accuracy(gated, tmp_path, topic_classifier):
    """item 2: a baseline quality of 0 made the ratio None, which skipped the limit."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(topic_classifier)
    rows = [json.loads(line) for line in (topic_classifier.parent / "eval.jsonl").read_text().splitlines()]
    encoded = tokenizer([r["text"] for r in rows], padding="max_length", max_length=16, truncation=True,
                        return_tensors="np")
    wrong = tmp_path / "wrong.npz"  # a class index the model does not have: every answer is wrong
    np.savez(wrong, **{k: v.astype(np.int64) for k, v in encoded.items()}, labels=np.full(len(rows), 99))
    out, target, _ = gated
    (tmp_path / "edge-pack.toml").write_text("[sla]\nmin_accuracy_ratio = 0.98\n")
    run = edge_pack("bench", out, "--target-file", target, "--eval", wrong, "--sla", tmp_path / "edge-pack.toml",
                    "--runs", "1")
    assert_one_line_error(run, 2, "baseline's accuracy", "is 0", "min_accuracy")
    (tmp_path / "edge-pack.toml").write_text("[sla]\nmin_accuracy_ratio = 0\nmin_accuracy = 0.5\n")
    run = edge_pack("bench", out, "--target-file", target, "--eval", wrong, "--sla", tmp_path / "edge-pack.toml",
                    "--runs", "1", "--json")
    assert run.code == 1, run.stderr
    assert all("accuracy 0.000 < 0.500" in r["verdict"]["reasons"][0] for r in run.json()["rows"])


def test_noisy_latency_is_unverified_instead_of_flipping(gated, tmp_path):
    """item 4 and 'Latency you can decide with': timings whose p50 lands on either side of the limit by
    chance gave pass on one run and fail on the next; now the verdict says the timings cannot decide it,
    every time, after the bounded extra rounds."""
    sla = "[sla]\nmin_accuracy_ratio = 0.5\nmax_latency_ms = 100\n"
    statuses = set()
    for _ in range(3):
        run = bench(gated, tmp_path, sla, "--runtime", "runtime_doubles.noisy", "-p", "fp32", "--runs", "12",
                    "--warmup", "0", "--json")
        assert run.code == 5, run.stderr
        results = run.json()
        (row,) = results["rows"]
        statuses.add(row["verdict"]["status"])
        assert "not decided: the timings are too noisy" in row["verdict"]["unverified"][0]
        assert row["latency"]["rounds"] == 8 and row["latency_runs"] == 8 * 3  # 4 rounds + 4 extra, 3 runs each
        low, high = row["latency"]["p50_interval"]
        assert low < 100 < high
        load = results["targets"]["gated"]["load"]
        assert load["before"] is not None and load["during"] is not None
    assert statuses == {"unverified"}


def test_identical_files_are_measured_once_and_rounds_interleave(gated, tmp_path):
    run = bench(gated, tmp_path, "[sla]\nmin_accuracy_ratio = 0.5\n", "--runs", "8", "--json")
    assert run.code == 0, run.stderr
    rows = {r["precision"]: r for r in run.json()["rows"]}
    assert rows["int8"]["content"] == rows["q8"]["content"]
    assert "the same bytes as q8: measured once" in rows["int8"]["warnings"]
    assert rows["int8"]["latency_p50_ms"] == rows["q8"]["latency_p50_ms"]
    assert rows["fp32"]["latency"]["rounds"] == 4 and rows["fp32"]["latency_runs"] == 8


def test_bits_per_weight_come_from_the_file(gated, tmp_path):
    """item 7: the cliff used the TOML's nominal bits. q8 stores int8 weights with their scales; q4 keeps
    the embedding table in fp32 (the browser has no 4-bit Gather), so it holds far more than 4 bits."""
    run = bench(gated, tmp_path, "[sla]\nmin_accuracy_ratio = 0.5\n", "--runs", "1", "--json")
    results = run.json()
    bits = {r["precision"]: r["bits_per_weight"] for r in results["rows"]}
    assert bits["fp32"] == pytest.approx(32, abs=0.01)
    assert 8 <= bits["q8"] < 9.5
    assert bits["q4"] > 6  # nominal 4
    points = {p["precision"]: p for p in results["targets"]["gated"]["cliff"]["points"]}
    assert points["q4"]["bits"] == pytest.approx(bits["q4"], abs=0.01) and points["q4"]["nominal_bits"] == 4


def test_results_edited_after_the_bench_do_not_verify_or_merge(gated, tmp_path):
    """item 8: results.json was not hashed: a verdict edited to passed: true verified and merged."""
    out, _, _ = gated
    run = bench(gated, tmp_path, "[sla]\nmin_accuracy_ratio = 0.999\nmax_size_mb = 0.01\n", "--runs", "1")
    assert run.code == 1, run.stderr
    assert edge_pack("verify", out).code == 0
    results_file = out / "results.json"
    honest = results_file.read_text()
    edited = json.loads(honest)
    edited["rows"][0]["verdict"].update(passed=True, status="pass", reasons=[])
    edited["passed"] = True
    results_file.write_text(json.dumps(edited, indent=2))
    run = edge_pack("verify", out)
    assert run.code == 1 and "altered: results.json" in run.stdout, run.stdout
    merge = edge_pack("bundle", "merge", out, "--out", tmp_path / "merged")
    assert_one_line_error(merge, 2, "does not match its manifest", "results.json")
    results_file.write_text(honest)
    (out / "report.md").write_text("## edge-pack: ✅ every target has a candidate that meets the SLA\n")
    assert edge_pack("verify", out).code == 1
    assert edge_pack("report", out).code == 0  # regenerates the reports and records their hashes
    assert edge_pack("verify", out).code == 0
