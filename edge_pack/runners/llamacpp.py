"""llama.cpp through llama-cpp-python: the pi target's runtime, on this machine or on a device over SSH
(--device ssh://user@host). The same harness (harness/pi/run.py) runs in both places; it also answers task
rows (asks) by the generation protocol of edge_pack/generation.py."""
from __future__ import annotations

from pathlib import Path

from ..generation import Ask
from . import RunOptions, RunResult
from . import ssh
from .local import run_harness

SCRIPT = "pi/run.py"
DEVICE_MODULES = ("llama_cpp", "numpy")  # what the device's Python needs
GEN_TOKENS = 64  # tokens generated one by one to measure generation speed (llama-bench's tg)


def check_device(address: str) -> dict:
    """Reach the device before any measurement and learn what it is; a one-line error when it cannot
    run the harness (no Python, no llama-cpp-python), with the line to install it there."""
    return ssh.probe(address, DEVICE_MODULES)


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
        asks: list[Ask] | None = None) -> RunResult:
    """Measure the GGUF on `samples` (logits, speed); with `asks`, its answers come back in RunResult.answers."""
    extra = {"gen_tokens": GEN_TOKENS, **({"asks": [a.to_json() for a in asks]} if asks else {})}
    device = options.extra.get("device")
    if device:
        return ssh.run_harness(device, SCRIPT, files, samples, latency_input, options, extra, DEVICE_MODULES)
    return run_harness(SCRIPT, files[0], samples, latency_input, options, extra)
