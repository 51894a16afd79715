"""Run one .tflite file with the LiteRT interpreter (ai-edge-litert): load time, outputs for each sample,
latency with explicit threads, peak memory, and the p50 of LiteRT's own `litert-benchmark` tool as a
cross-check. Usage: python run.py request.json (see harness/protocol.py); the request may add "layouts"
({input name: "NHWC"}) for image inputs converted to channels-last."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

import feeds  # noqa: E402
import protocol  # noqa: E402


def main() -> None:
    request = protocol.read_request(sys.argv)
    samples, latency_input = protocol.load_inputs(request["inputs"])
    threads = int(request.get("threads", 1))
    layouts = request.get("layouts", {})
    runner, load_ms, rss_before = protocol.timed_load(
        lambda: Interpreter(model_path=request["model"], num_threads=threads).get_signature_runner())
    inputs, outputs_details = runner.get_input_details(), runner.get_output_details()

    outputs = []
    for sample in samples:
        fed, cut = feeds.fit(sample, inputs, layouts)
        outputs.append(feeds.read(runner(**fed), outputs_details, cut))
    protocol.save_outputs(request["outputs"], outputs)

    latency, metrics = [], {}
    if latency_input is not None and request.get("runs", 0) > 0:
        fed, _ = feeds.fit(latency_input, inputs, layouts)
        latency = protocol.time_request(request, lambda: runner(**fed))
        if request.get("cross_check_runs"):  # once per bench, not every latency round
            metrics = cross_check(request, threads)
    version = importlib.metadata.version("ai-edge-litert")
    protocol.write_result(request, {
        "load_ms": load_ms, "latency_ms": latency, "peak_rss_mb": protocol.peak_rss_mb(),
        "rss_before_load_mb": rss_before, "threads": threads, "metrics": metrics,
        "runtime": f"LiteRT (ai-edge-litert {version}, Python Interpreter, XNNPACK CPU)",
    })


def cross_check(request: dict, threads: int) -> dict:
    """LiteRT's own benchmark tool on the same file and threads (random inputs of the model's types): its
    median, or the line saying why it could not run (it has no int64 inputs, and its random integers
    index no vocabulary)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "benchmark.json")
        argv = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", "--model", request["model"],
                "--num_threads", str(threads), "--num_runs", str(request["cross_check_runs"]),
                "--warmup_runs", str(max(1, int(request.get("warmup", 0)))), "--result_json", result]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return {"litert_benchmark_error": "timed out"}
        if proc.returncode != 0 or not os.path.isfile(result):
            return {"litert_benchmark_error": _cause(proc.stderr + proc.stdout) or f"exit code {proc.returncode}"}
        with open(result) as handle:
            found = json.load(handle)["latency"]
    return {"litert_benchmark_p50_ms": found["median_ms"], "litert_benchmark_runs": found["num_runs"]}


def _cause(text: str) -> str:
    """The tool's first error line (the cause; later ones are the traceback), or its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR") or "Error:" in line]
    return (errors[0] if errors else lines[-1] if lines else "")[:300]


if __name__ == "__main__":
    main()
