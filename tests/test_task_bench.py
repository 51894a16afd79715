"""Task accuracy in a bench (issue 15, section 1): `edge-pack bench --eval tasks.jsonl` of a decoder bundle
answers every row on each candidate's own runtime (llama.cpp for pi, Transformers.js in Node for web),
scores the answers, and judges the accuracy against the fp32 source's answers in torch with the same prompts
and greedy decoding. First on the tiny Llama of tests/models.py (fast), then on the real
SmolLM2-135M-Instruct (tests/smollm2.py) with its 30-row task set: the issue's "done means"."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import edge_pack
from conftest import assert_one_line_error, edge_pack as run_cli
from edge_pack.generation import Prompter, torch_answers
from edge_pack.task_bench import TaskSettings
from edge_pack.task_eval import asks, score
from edge_pack.tasks import read_tasks

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make install builds it)")

NEW_TOKENS = 12
# What the tiny Llama (trained on the standard library's sources) can partly answer: choices ranked by
# likelihood, and generated code scored by contains / regex / number / exact. Rows without an id are named
# by their line number.
TINY_ROWS = [
    {"id": "import", "prompt": "import os\nimport", "choices": ["sys", "xyzzy"], "answer": "sys"},
    {"id": "return", "prompt": "def f(x):\n    return", "choices": ["x", "("], "answer": "x"},
    {"prompt": "def __init__(self", "answer": "self", "score": "contains"},
    {"prompt": "for i in range(", "answer": ")", "score": "contains"},
    {"id": "class", "prompt": "class Error(Exception):\n    ", "answer": "\\S", "score": "regex"},
    {"id": "sum", "prompt": "x = 1 + 2  # x is", "answer": "3", "score": "number"},
    {"id": "never", "prompt": "    return self.", "answer": "xyzzy plugh", "score": "exact"},
]
PI_PRECISIONS = ("f16", "q8_0", "q4_k_m")


def _write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _torch_samples(model_dir: Path, task_file: Path, max_new_tokens: int, chat_template: bool | None = None):
    """The baseline as the test computes it itself: the fp32 folder in torch, greedy, the same prompts."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompter = Prompter(AutoTokenizer.from_pretrained(str(model_dir)), chat_template=chat_template,
                        max_new_tokens=max_new_tokens, support_dir=model_dir)
    rows = read_tasks(task_file)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    return score(rows, torch_answers(model, asks(rows, prompter)), prompter)


def _check_task_rows(results: dict, target: str, precisions, n: int, ids: list[str]) -> dict[str, dict]:
    """What every candidate row of a task bench must hold; returns the rows by precision."""
    rows = {r["precision"]: r for r in results["rows"] if r["target"] == target}
    assert set(rows) == set(precisions)
    for precision, row in rows.items():
        assert row["error"] is None, (precision, row["error"])
        samples = row["samples"]
        assert [s["id"] for s in samples] == ids, precision
        assert set(samples[0]) == {"id", "output", "correct", "confidence"}
        quality = row["quality"]
        assert quality["name"] == "task accuracy"
        correct = sum(s["correct"] for s in samples)
        assert quality["value"] == pytest.approx(correct / n)  # the accuracy is the share of right samples
        certainty = quality["certainty"]
        assert certainty["samples"] == n
        low, high = certainty["interval"]
        assert low <= quality["value"] <= high and high - low > 0
        base = {s["id"]: s["correct"] for s in results["targets"][target]["baseline"]["samples"]}
        worse = sum(base[s["id"]] and not s["correct"] for s in samples)
        assert certainty["worse"] == worse  # the paired test counts this candidate's losses against fp32
        # label-free fidelity stays beside the task accuracy
        assert {"perplexity", "kl_divergence", "same_top1"} <= set(row["metrics"])
    return rows


# ------------------------------------------------------------------------------ tiny Llama through llama.cpp

@pytest.fixture(scope="module")
def tiny_tasks(tmp_path_factory) -> Path:
    return _write_rows(tmp_path_factory.mktemp("tasks") / "tasks.jsonl", TINY_ROWS)


@pytest.fixture(scope="module")
def tiny_pi_bundle(tmp_path_factory, tiny_llama) -> Path:
    out = tmp_path_factory.mktemp("task-bench") / "bundle"
    edge_pack.build(str(tiny_llama), ["pi"], list(PI_PRECISIONS), out)
    return out


@pytest.fixture(scope="module")
def tiny_pi_bench(tiny_pi_bundle, tiny_tasks):
    run = run_cli("bench", tiny_pi_bundle, "--eval", tiny_tasks, "--max-new-tokens", NEW_TOKENS, "--runs", 2,
                  "--warmup", 0)
    return run, json.loads((tiny_pi_bundle / "results.json").read_text())


def test_bench_reports_task_accuracy_per_precision_on_llama_cpp(tiny_pi_bench, tiny_tasks, tiny_llama):
    run, results = tiny_pi_bench
    assert run.code in (0, 1), run.stderr  # pass or fail is the SLA's; the bench itself worked
    n = len(TINY_ROWS)
    ids = ["import", "return", "3", "4", "class", "sum", "never"]  # ids from the rows, else the line number
    rows = _check_task_rows(results, "pi", PI_PRECISIONS, n, ids)
    target = results["targets"]["pi"]
    baseline = target["baseline"]
    assert baseline["origin"] == "fp32 source (PyTorch)"
    assert baseline["quality"]["name"] == "task accuracy"
    # the baseline is torch's greedy answers to the same prompts (no chat template: the tiny Llama has none)
    ours = _torch_samples(tiny_llama, tiny_tasks, NEW_TOKENS)
    assert [s["output"] for s in baseline["samples"]] == [s.output for s in ours]
    assert baseline["quality"]["value"] == pytest.approx(sum(s.correct for s in ours) / n)
    assert 0 < baseline["quality"]["value"] < 1  # rows the model gets right and one it cannot
    assert "12 new tokens" in target["eval"] and "perplexity, KL and same top-1 on the built-in text" in target["eval"]
    # f16 answers as fp32 does on most rows
    same = sum(a["output"] == b.output for a, b in zip(rows["f16"]["samples"], ours))
    assert same >= n - 1, (rows["f16"]["samples"], ours)
    assert next(s for s in rows["f16"]["samples"] if s["id"] == "never")["correct"] is False
    assert rows["q4_k_m"]["metrics"]["answer_tokens_per_s"] > 0
    # the terminal table and both reports show it
    assert "task accuracy" in run.stdout
    for precision in PI_PRECISIONS:
        assert precision in run.stdout
    report = (Path(results["bundle"]) / "report.md").read_text()
    assert "task accuracy" in report and "McNemar" in report


def test_a_candidate_that_starts_to_fail_is_named_with_its_rows(tiny_pi_bench):
    from edge_pack.results import Results
    from edge_pack.task_bench import failure_notes

    _, results = tiny_pi_bench
    typed = Results.from_json(results)
    rows = typed.rows_of("pi")
    f16 = next(r for r in rows if r.precision == "f16")
    q4 = next(r for r in rows if r.precision == "q4_k_m")
    right = next(s for s in f16.samples if s["correct"])
    # as a worse quantization would: q4_k_m answers as f16 but for one row f16 got right
    q4.samples = [dict(s, correct=False, output="Lyon") if s["id"] == right["id"] else s for s in f16.samples]
    notes = failure_notes(rows, typed.targets["pi"].baseline)
    assert f"q4_k_m got 1 of {len(TINY_ROWS)} wrong that f16 got right: {right['id']} ('Lyon')" in notes


@pytest.mark.bad_input
def test_bad_task_input_is_a_one_line_error(tiny_pi_bundle, tmp_path):
    no_prompt = _write_rows(tmp_path / "tasks.jsonl", [TINY_ROWS[0], {"answer": "x"}])
    # a task file is recognised by its first row; the second lacks its prompt
    assert_one_line_error(run_cli("bench", tiny_pi_bundle, "--eval", no_prompt), 2, "tasks.jsonl:2", '"prompt"')
    not_a_string = _write_rows(tmp_path / "numbers.jsonl", [{"prompt": "2+2 =", "answer": 4}])
    assert_one_line_error(run_cli("bench", tiny_pi_bundle, "--eval", not_a_string), 2, "numbers.jsonl:1",
                          "must be a string")
    # the tiny Llama has no chat template to turn on
    tasks = _write_rows(tmp_path / "ok.jsonl", TINY_ROWS[:2])
    assert_one_line_error(run_cli("bench", tiny_pi_bundle, "--eval", tasks, "--chat-template"), 2, "chat template")
    # generation settings without a task file would do nothing
    assert_one_line_error(run_cli("bench", tiny_pi_bundle, "--max-new-tokens", 8), 2, "--max-new-tokens",
                          "task file")
    before = (tiny_pi_bundle / "results.json").read_bytes() if (tiny_pi_bundle / "results.json").exists() else None
    job = tmp_path / "edge-pack.toml"
    job.write_text(f'out = "{tiny_pi_bundle}"\neval = "ok.jsonl"\n\n[bench]\nmax_new_tokens = 0\n')
    assert_one_line_error(run_cli("bench", "--config", job), 2, "edge-pack.toml:5", "bench.max_new_tokens")
    job.write_text(f'out = "{tiny_pi_bundle}"\n\n[bench]\nchat_template = "yes"\n')
    assert_one_line_error(run_cli("bench", "--config", job), 2, "edge-pack.toml:4", "bench.chat_template",
                          "true or false")
    after = (tiny_pi_bundle / "results.json").read_bytes() if (tiny_pi_bundle / "results.json").exists() else None
    assert after == before  # nothing written


# ------------------------------------------------------------------------------ tiny Llama on the web target

def test_web_decoder_answers_task_rows_in_transformers_js(tmp_path, tiny_llama, tiny_tasks):
    from edge_pack.runners import runtime_missing

    if runtime_missing("node"):
        pytest.skip(f"Transformers.js in Node is not installed: {runtime_missing('node')}")
    bundle = tmp_path / "bundle"
    edge_pack.build(str(tiny_llama), ["web"], ["q8"], bundle)
    results = edge_pack.bench(bundle, runtime="node", eval_path=tiny_tasks, runs=1, warmup=0,
                              tasks=TaskSettings(max_new_tokens=NEW_TOKENS))
    (row,) = results["rows"]
    assert row["runtime"].startswith("Transformers.js")
    n = len(TINY_ROWS)
    _check_task_rows(results, "web", ["q8"], n, ["import", "return", "3", "4", "class", "sum", "never"])
    baseline = results["targets"]["web"]["baseline"]
    same = sum(a["output"] == b["output"] for a, b in zip(row["samples"], baseline["samples"]))
    assert same >= n - 2  # 8-bit weights keep most greedy answers


# ------------------------------------------------------------------------------ SmolLM2-135M-Instruct

@pytest.fixture(scope="module")
def smollm2_bench(tmp_path_factory):
    import smollm2

    model = smollm2.smollm2()
    work = tmp_path_factory.mktemp("smollm2-tasks")
    tasks = smollm2.write_tasks(work / "tasks.jsonl")
    bundle = work / "bundle"
    edge_pack.build(str(model), ["pi"], list(PI_PRECISIONS), bundle)
    run = run_cli("bench", bundle, "--eval", tasks, "--runs", 2, "--warmup", 0)
    return run, json.loads((bundle / "results.json").read_text()), model, tasks


def test_smollm2_task_accuracy_for_f16_q8_0_q4_k_m_with_intervals(smollm2_bench):
    import smollm2

    run, results, model, tasks = smollm2_bench
    assert run.code in (0, 1), run.stderr
    rows_in = smollm2.task_rows()
    n = len(rows_in)
    rows = _check_task_rows(results, "pi", PI_PRECISIONS, n, [r["id"] for r in rows_in])
    baseline = results["targets"]["pi"]["baseline"]
    assert baseline["origin"] == "fp32 source (PyTorch)" and len(baseline["samples"]) == n
    # an instruct model with a chat template: on by default, and the model answers part of the rows right
    assert "; chat template," in results["targets"]["pi"]["eval"]
    assert 0.3 < baseline["quality"]["value"] < 1
    same = sum(a["output"] == b["output"] for a, b in zip(rows["f16"]["samples"], baseline["samples"]))
    assert same >= 0.8 * n, same  # f16 agrees with fp32 in torch on most rows
    # the terminal prints task accuracy with its interval for each precision
    assert "task accuracy" in run.stdout
    for precision, row in rows.items():
        low, high = row["quality"]["certainty"]["interval"]
        assert f"{low:.2f}–{high:.2f}" in run.stdout, (precision, run.stdout)
