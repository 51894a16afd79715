"""One measurement of one artifact on its runtime, the same code for the build-time check and the bench."""
from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import metrics
from .errors import ConversionError, UserError
from .evalset import EvalSet
from .runners import RunOptions, RunResult, get_runner
from .targets import Precision


def reference_vectors(reference, task: str, samples: list[dict]) -> tuple[list[np.ndarray], str]:
    """The fp32 source's primary outputs on the samples, and their kind (embedding, logits, tensor)."""
    try:
        outputs = [reference(s) for s in samples]
    except Exception as exc:  # the user's own model fails on these inputs: say so, with its words
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"the fp32 source fails on the measurement inputs ({first[:300]}); give inputs it takes "
                        "with --eval FILE.npz") from None
    return [metrics.primary(task, o, s) for o, s in zip(outputs, samples)], metrics.output_kind(task, outputs[0])


def run_artifact(runtime: str, files: list[Path], task: str, evalset: EvalSet, options: RunOptions,
                 asks=None) -> tuple[RunResult, list[np.ndarray]]:
    """With `asks` (a decoder's task rows, edge_pack/generation.py), the runner answers them too:
    RunResult.answers."""
    options = replace(options, task=task)
    runner = get_runner(runtime)
    if asks:
        result = runner.run(files, evalset.samples, evalset.latency_input, options, asks=asks)
    else:
        result = runner.run(files, evalset.samples, evalset.latency_input, options)
    if result.postprocessed:
        vectors = [np.asarray(next(iter(o.values())), dtype=np.float64).reshape(-1) for o in result.outputs]
    else:
        vectors = [metrics.primary(task, o, s) for o, s in zip(result.outputs, evalset.samples)]
    return result, vectors


def answers_asks(runtime: str) -> bool:
    """Whether the runner takes a decoder's task rows (its run() has the `asks` parameter)."""
    return "asks" in inspect.signature(get_runner(runtime).run).parameters


def validate(runtime: str, files: list[Path], precision: Precision, task: str, evalset: EvalSet,
             baseline: list[np.ndarray], kind: str, timeout_s: float | None = None) -> dict:
    """Load the artifact once on its runtime and compare it with the fp32 source, as an exporter's own
    validation does; a failure means the artifact is not shipped."""
    options = RunOptions(warmup=0, runs=0, **({"timeout_s": timeout_s} if timeout_s else {}))
    _, vectors = run_artifact(runtime, files, task, evalset, options)
    found = metrics.fidelity(kind, vectors, baseline)
    if not np.isfinite(found["cosine_min"]) or found["cosine_min"] < precision.min_cosine:
        raise ConversionError(f"validation failed: cosine to the fp32 source {found['cosine_min']:.4f} < "
                              f"{precision.min_cosine} on {found['samples']} inputs")
    if precision.max_abs is not None and found["max_abs"] > precision.max_abs:
        raise ConversionError(f"validation failed: max-abs difference to the fp32 source {found['max_abs']:.2e} > "
                              f"{precision.max_abs:g}")
    return found
