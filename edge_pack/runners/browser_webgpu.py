"""Transformers.js in headless Chromium on WebGPU (device 'webgpu'), the same page and artifacts as the
browser runner. Headless Chromium offers WebGPU with --enable-unsafe-webgpu (harness/web/browser.mjs); on a
machine without a GPU its adapter is SwiftShader, a software Vulkan on the CPU: outputs are WebGPU's own
kernels' (where the known q4/q8 field bugs show, Transformers.js issues #1728, #1317, #1512), latency is a
CPU emulating a GPU and is labelled so, never as GPU speed.

Each artifact runs on WASM too, in the same browser, on the same inputs: WebGPU outputs that diverge from
WASM's beyond the precision's validation floor fail the candidate, with the divergence in the message."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import RunnerError
from . import RunOptions, RunResult, with_asks
from . import transformers_js


def missing() -> list[str]:
    return transformers_js.missing(browser=True)


def run(files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
        asks=None) -> RunResult:
    options = with_asks(options, asks)
    wasm = transformers_js.measure("browser.mjs", files, samples, None, replace(options, runs=0, warmup=0),
                                   browser=True)
    options = replace(options, extra={**options.extra, "web_device": "webgpu"})
    webgpu = transformers_js.measure("browser.mjs", files, samples, latency_input, options, browser=True)
    found = divergence(wasm, webgpu)
    floor = _floor(files[0])
    if floor is not None and found.get("cosine_min", 1.0) < floor:
        raise RunnerError(f"WebGPU outputs diverge from WASM on the same inputs: {describe(found)} (the validation "
                          f"floor is cosine {floor})")
    return replace(webgpu, metrics={**webgpu.metrics, **{f"webgpu_vs_wasm_{k}": v for k, v in found.items()}},
                   host={**webgpu.host, "wasm_answers": wasm.answers})


def divergence(wasm: RunResult, webgpu: RunResult) -> dict:
    """How far WebGPU's outputs are from WASM's: cosine of each sample's outputs (the lowest), the share of
    positions with the same top-1, and the share of generation asks answered with the same tokens."""
    found = {}
    if wasm.outputs:
        cosines, same = [], []
        for a, b in zip(wasm.outputs, webgpu.outputs):
            x, y = (np.asarray(next(iter(o.values())), dtype=np.float64) for o in (a, b))
            denom = np.linalg.norm(x) * np.linalg.norm(y)
            cosines.append(float(np.dot(x.reshape(-1), y.reshape(-1)) / denom) if denom else float(np.allclose(x, y)))
            if x.ndim >= 2:
                same.append(np.mean(x.reshape(-1, x.shape[-1]).argmax(-1) == y.reshape(-1, y.shape[-1]).argmax(-1)))
        found["cosine_min"] = float(np.nan_to_num(min(cosines), nan=-1.0))
        if same:
            found["same_top1"] = float(np.mean(same))
    if wasm.answers:
        found["same_sequence"] = float(np.mean([a["tokens"] == b["tokens"] for a, b in zip(wasm.answers, webgpu.answers)]))
    return found


def describe(found: dict) -> str:
    parts = [f"cosine {found['cosine_min']:.4f}" if "cosine_min" in found else None,
             f"same top-1 {found['same_top1']:.3f}" if "same_top1" in found else None,
             f"same sequence {found['same_sequence']:.2f}" if "same_sequence" in found else None]
    return ", ".join(p for p in parts if p)


def _floor(model: Path) -> float | None:
    """The validation floor of the web precision this file is (onnx/model_q4.onnx → q4's min_cosine)."""
    from ..targets import get_target

    name = f"{model.parent.name}/{model.name}"
    return next((p.min_cosine for p in get_target("web").precisions.values() if p.file == name), None)


def install(progress=print) -> None:
    transformers_js.install(progress)
