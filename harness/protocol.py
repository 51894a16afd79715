"""The request/response protocol every on-device runner speaks; stdlib + numpy only, because this file is
copied to devices (a Raspberry Pi over SSH, a Mac) and runs with their Python.

A request is a JSON file: {"model": path, "inputs": npz, "outputs": npz, "result": json path,
"threads": n, "warmup": n, "runs": n}. The inputs npz holds samples as "s<i>/<input name>" and the latency
input as "latency/<input name>". The runner writes outputs as "s<i>/<output name>" and a JSON result with
load_ms, latency_ms (every timed run), peak_rss_mb and runtime, and optionally "obtained" saying which numbers
were not measured on the real runtime (e.g. {"outputs": "emulated", "latency": "estimated"}).
"""
from __future__ import annotations

import json
import platform
import resource
import sys
import time

import numpy as np

import device


def read_request(argv: list[str]) -> dict:
    with open(argv[1]) as handle:
        return json.load(handle)


def load_inputs(path: str) -> tuple[list[dict], dict | None]:
    """Samples in order, and the latency input (None when the request has none)."""
    arrays = np.load(path)
    samples: dict[int, dict] = {}
    latency = {}
    for key in arrays.files:
        group, name = key.split("/", 1)
        if group == "latency":
            latency[name] = arrays[key]
        else:
            samples.setdefault(int(group[1:]), {})[name] = arrays[key]
    return [samples[i] for i in sorted(samples)], latency or None


def save_outputs(path: str, outputs: list[dict]) -> None:
    np.savez(path, **{f"s{i}/{name}": value for i, out in enumerate(outputs) for name, value in out.items()})


def timed_load(load):
    """(what load() returns, the milliseconds it took, the peak memory in MB before it): what every runner
    reports about loading a model."""
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    loaded = load()
    return loaded, (time.perf_counter() - start) * 1000.0, rss_before


def time_request(request: dict, run) -> list[float]:
    """The timed runs of run() the request asks for (none when it asks for none)."""
    runs = int(request.get("runs", 0))
    return time_runs(run, int(request.get("warmup", 0)), runs) if runs > 0 else []


def time_runs(run, warmup: int, runs: int) -> list[float]:
    """Milliseconds of each timed call of run(), after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux it is VmHWM: ru_maxrss keeps the parent's peak through
    fork and exec, so a harness started by a bench holding torch would report the bench's memory as its own."""
    try:
        with open("/proc/self/status") as handle:
            return int(handle.read().split("VmHWM:")[1].split()[0]) / 1024.0
    except (OSError, IndexError, ValueError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


def host() -> dict:
    return {"processor": platform.processor(), **device.facts()}


def write_result(request: dict, result: dict) -> None:
    with open(request["result"], "w") as handle:
        json.dump({**result, "host": host()}, handle)
