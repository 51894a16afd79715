"""Run a harness script in a child process on this machine: a runtime that crashes or hangs costs one
candidate, not the whole bench, and the child's peak memory is the artifact's alone."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import RunnerError
from ..quiet import tail
from ..resources import harness_dir
from . import RunOptions, RunResult


def write_inputs(path: Path, samples: list[dict], latency_input: dict | None) -> None:
    arrays = {f"s{i}/{name}": value for i, sample in enumerate(samples) for name, value in sample.items()}
    arrays.update({f"latency/{name}": value for name, value in (latency_input or {}).items()})
    np.savez(path, **arrays)


def read_outputs(path: Path, count: int) -> list[dict[str, np.ndarray]]:
    outputs: list[dict] = [{} for _ in range(count)]
    with np.load(path) as arrays:
        for key in arrays.files:
            group, name = key.split("/", 1)
            outputs[int(group[1:])][name] = arrays[key]
    return outputs


def run_harness(script: str, model: Path, samples: list[dict], latency_input: dict | None,
                options: RunOptions, extra: dict | None = None, command: list[str] | None = None) -> RunResult:
    """Run harness/<script> with a request for `model`; `command` replaces the interpreter (e.g. node)."""
    with tempfile.TemporaryDirectory(prefix="edge-pack-run-") as tmp:
        work = Path(tmp)
        write_inputs(work / "inputs.npz", samples, latency_input)
        request = harness_request(str(model), str(work), options, extra)
        (work / "request.json").write_text(json.dumps(request))
        argv = [*(command or [sys.executable]), str(harness_dir() / script), str(work / "request.json")]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=options.timeout_s)
        except subprocess.TimeoutExpired:
            raise RunnerError(f"timed out after {options.timeout_s:.0f} s") from None
        if proc.returncode != 0:
            raise RunnerError(_failure(proc))
        return read_result(work / "result.json", work / "outputs.npz", len(samples))


def harness_request(model: str, folder: str, options: RunOptions, extra: dict | None = None) -> dict:
    """The request harness/protocol.py reads: the model, and inputs, outputs and result files in `folder`
    (a path here or on the device)."""
    return {"model": model, "inputs": f"{folder}/inputs.npz", "outputs": f"{folder}/outputs.npz",
            "result": f"{folder}/result.json", "threads": options.threads, "warmup": options.warmup,
            "runs": options.runs, **(extra or {})}


def read_result(result_path: Path, outputs_path: Path, count: int) -> RunResult:
    """A harness's answer (protocol.py) as a RunResult."""
    result = json.loads(result_path.read_text())
    return RunResult(outputs=read_outputs(outputs_path, count), load_ms=result["load_ms"],
                     latency_ms=result["latency_ms"], peak_rss_mb=result["peak_rss_mb"], runtime=result["runtime"],
                     host=result.get("host", {}), postprocessed=result.get("postprocessed", False),
                     latency_note=result.get("latency_note"), obtained=result.get("obtained", {}),
                     metrics=result.get("metrics", {}), answers=result.get("answers", []))


def last_words(text: str, limit: int = 300) -> str:
    """The line of a runtime's stderr that says what went wrong (the last one), on one line."""
    line = tail(text or "", 1)
    line = " ".join(line.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _failure(proc: subprocess.CompletedProcess) -> str:
    text = last_words(proc.stderr or proc.stdout)
    if proc.returncode < 0:
        return f"crashed ({signal.Signals(-proc.returncode).name}){': ' + text if text else ''}"
    return text or f"exited with code {proc.returncode}"
