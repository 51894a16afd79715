"""Transformers.js in headless Chromium on WebGPU (device 'webgpu'), the same page and artifacts as the
browser runner. On a machine without a GPU, Chromium's WebGPU runs on its software adapter (SwiftShader's
Vulkan through Dawn): outputs are WebGPU's kernels' (where q4/q8 field bugs show), latency is a CPU's
emulating a GPU and is labelled so, never as GPU speed."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from . import RunOptions, RunResult
from . import transformers_js

NAME = "Transformers.js (Chromium, WebGPU)"


def missing() -> list[str]:
    return transformers_js.missing(browser=True)


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions) -> RunResult:
    options = replace(options, extra={**options.extra, "web_device": "webgpu"})
    return transformers_js.measure("browser.mjs", files, samples, latency_input, options, browser=True)


def install(progress=print) -> None:
    transformers_js.install(progress)
