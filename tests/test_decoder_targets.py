"""One job, one decoder, the four targets (issue 17, "Both"): `bench -c job.toml` with
targets = ["pi", "web", "android", "ios"] on the tiny seeded Llama prints a table per target and a decision
each, from the same torch baseline and the same scored task rows. Each target runs its real runtime:
llama.cpp, Transformers.js in Node, the LiteRT interpreter, the Core ML emulator (no Mac here)."""
from __future__ import annotations

import json

from conftest import edge_pack

TASK_ROWS = [{"id": "import", "prompt": "import os\nimport", "choices": ["sys", "xyzzy"], "answer": "sys"},
             {"id": "init", "prompt": "def __init__(self", "answer": "self", "score": "contains"}]
# 8 bits on every target; the generous latency limit is checked where a runtime times it (the LiteRT
# interpreter's prefill of the latency prompt, llama.cpp's, Transformers.js's) and accepted unmeasured on
# the emulator only because the job says so.
JOB = """source = "{source}"
targets = ["pi", "web", "android", "ios"]
precisions = {{ pi = ["q8_0"], web = ["q8"], android = ["dynamic-int8"], ios = ["int8"] }}
runtimes = {{ web = "node" }}
eval = "tasks.jsonl"
out = "dist"

[bench]
max_new_tokens = 8
runs = 2

[sla]
min_accuracy_ratio = 0.9
max_latency_ms = 60000

[sla.ios]
unverified_ok = ["max_latency_ms"]
"""


def test_one_job_measures_a_decoder_on_all_four_targets(tiny_llama, tmp_path):
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TASK_ROWS))
    (tmp_path / "job.toml").write_text(JOB.format(source=tiny_llama))
    built = edge_pack("build", "-c", "job.toml", cwd=tmp_path)
    assert built.code == 0, built.stderr
    bench = edge_pack("bench", "-c", "job.toml", cwd=tmp_path)
    assert bench.code == 0, bench.stderr
    for target in ("pi", "web", "android", "ios"):
        assert f"{target} — measured on" in bench.stdout and f"{target}: ship " in bench.stdout
    results = json.loads((tmp_path / "dist" / "results.json").read_text())
    rows = {r["target"]: r for r in results["rows"]}
    assert {t: r["precision"] for t, r in rows.items()} == {"pi": "q8_0", "web": "q8", "android": "dynamic-int8",
                                                            "ios": "int8"}
    baselines = {t: [s["output"] for s in v["baseline"]["samples"]] for t, v in results["targets"].items()}
    (baseline,) = {tuple(b) for b in baselines.values()}  # one torch baseline for the four tables
    for target, row in rows.items():
        assert row["error"] is None, (target, row["error"])
        assert tuple(s["output"] for s in row["samples"]) == baseline, target  # torch's greedy answers at 8 bits
        assert row["quality"]["name"] == "task accuracy" and row["metrics"]["same_top1"] >= 0.95
    for target in ("pi", "web", "android"):  # a decoder's latency is timed on the runtime and checked
        assert rows[target]["latency_p50_ms"] > 0 and rows[target]["verdict"]["status"] == "pass", target
    assert rows["ios"]["latency_p50_ms"] is None and rows["ios"]["latency_note"] == "emulated — no device latency"
    assert rows["ios"]["verdict"]["accepted_unmeasured"] == ["max_latency_ms"]
    assert {t: v["decision"]["recommended"] for t, v in results["targets"].items()} == \
        {t: r["precision"] for t, r in rows.items()}
