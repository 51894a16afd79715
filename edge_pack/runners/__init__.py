"""Runners: one per runtime. Each measures artifact files on the given samples and returns a RunResult;
the device-side half lives in harness/ and is the same code on this machine and on a device."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RunOptions:
    threads: int = 1
    warmup: int = 3
    runs: int = 20
    timeout_s: float = 900.0
    task: str | None = None  # the source's task (feature-extraction...), for runtimes that load by task
    # Runner-specific settings (a device address, compute units...), set by CLI flags of that runner.
    extra: dict = field(default_factory=dict)


@dataclass
class RunResult:
    outputs: list[dict[str, np.ndarray]]  # one dict of named outputs per sample
    load_ms: float
    latency_ms: list[float]  # every timed run
    peak_rss_mb: float
    runtime: str  # what ran it, with its version
    host: dict = field(default_factory=dict)
    # True when outputs are already the task's primary output (e.g. pooled by Transformers.js).
    postprocessed: bool = False
    # Measures only the runtime can take (tokens/s, perplexity...), merged into the row's metrics.
    metrics: dict = field(default_factory=dict)
    # Set when this runtime's timings would not be the device's (an emulator): it takes none, and reports
    # show this note (e.g. "emulated — no device latency") where latency and load time would be.
    latency_note: str | None = None
    # How the numbers were obtained when not by running the artifact on its real runtime and device:
    # {"outputs": "emulated"} (e.g. a faithful emulator of the device runtime), {"latency": "estimated"}
    # (from device facts). Anything not named here was "measured".
    obtained: dict = field(default_factory=dict)
    # A text-generation runtime's answers to the request's asks (edge_pack/generation.py), in order.
    answers: list = field(default_factory=list)


def get_runner(name: str):
    """The module edge_pack.runners.<name>, or a user's own module when the name is dotted
    (e.g. runtime = "mycompany.edge_runner" in a target TOML); it offers run(files, samples, latency_input,
    options), and optionally missing() -> list[str] (what this machine lacks, each with how to install it;
    `edge-pack doctor` and bench ask) and install(progress) (what `edge-pack setup TARGET` runs). A
    hyphen in a built-in runtime's name is the module's underscore (browser-webgpu: browser_webgpu.py)."""
    return importlib.import_module(name if "." in name else f"{__name__}.{name.replace('-', '_')}")


def runtime_missing(name: str) -> list[str]:
    """What this machine lacks to run the runner `name` (each item says how to install it); a runner
    declares it with a missing() function, a runner without one needs nothing beyond its target's modules."""
    try:
        runner = get_runner(name)
    except ImportError as exc:
        return [f"runner {name} cannot be imported ({exc})"]
    check = getattr(runner, "missing", None)
    return list(check()) if check else []
