"""Run a stateful Core ML decoder (an iOS 18 ML program whose KV cache is Core ML state, as
edge_pack/converters/coreml_decoder.py writes it): greedy generation per the protocol at the top of
edge_pack/generation.py, and logits at every position of each sample through the cache path.
Usage: python generate.py request.json

"backend": "emulator" (default; any system: the MIL emulator executes the program itself, read_state /
slice_update / coreml_update_state included, so outputs are the program's but timings are not a phone's:
none are reported) or "coreml" (macOS 15+: Core ML's MLModel.predict with the state from make_state();
written to Core ML's documented API, not run here: this machine has no Core ML).
Request (harness/protocol.py, plus): "asks"; "inputs" optional, samples "s<i>/input_ids" whose logits come
back as "s<i>/logits"; "prefill_len" (tokens a call takes, the package's upper bound by default).
"""
from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
import numpy as np  # noqa: E402

import decoding  # noqa: E402
import protocol  # noqa: E402

LATENCY_NOTE = "emulated — no device latency"
MASKED = -1e4  # as the converter writes it: exp() of it is 0 in fp16


def causal_mask(q_len: int, past: int) -> np.ndarray:
    end = past + q_len
    allowed = np.arange(end)[None, :] <= (past + np.arange(q_len))[:, None]
    return np.where(allowed, 0.0, MASKED).astype(np.float16)[None, None]


def _bounds(spec) -> tuple[int, int]:
    """(most tokens a call takes, positions the cache holds), from the package's input ranges."""
    ranges = {f.name: f.type.multiArrayType.shapeRange.sizeRanges for f in spec.description.input}
    return int(ranges["causal_mask"][2].upperBound), int(ranges["causal_mask"][3].upperBound)


class StatefulSession:
    """One conversation's state; predict(inputs, state) is Core ML's or the emulator's."""

    def __init__(self, predict, make_state, spec, prefill_len: int | None):
        self.predict, self.make_state = predict, make_state
        most, self.kv_len = _bounds(spec)
        self.prefill_len = min(prefill_len or most, most)
        self.reset()

    def reset(self) -> None:
        self.state = self.make_state()

    def prefill(self, tokens: list[int], start: int) -> np.ndarray:
        ids = np.array([tokens], np.int32)
        out = self.predict({"input_ids": ids, "causal_mask": causal_mask(len(tokens), start)}, self.state)
        return np.asarray(out["logits"], np.float32)[0]

    def decode(self, token: int, pos: int) -> np.ndarray:
        return self.prefill([token], pos)[0]


def _emulator(path: str):
    import torch

    from mil_emulator import Emulator

    emulator = Emulator(path)
    return emulator.predict, emulator.make_state, emulator.spec, \
        f"Core ML emulator (stateful MIL program in torch {torch.__version__})"


def _core_ml(path: str):
    import coremltools as ct

    model = ct.models.MLModel(path, compute_units=ct.ComputeUnit.CPU_ONLY)
    return (lambda inputs, state: model.predict(inputs, state=state)), model.make_state, model.get_spec(), \
        f"Core ML (coremltools {ct.__version__}, MLModel.predict with state, CPU)"


def main() -> None:
    request = protocol.read_request(sys.argv)
    import torch

    torch.set_num_threads(int(request.get("threads", 1)))
    emulated = request.get("backend", "emulator") == "emulator"
    rss_before = protocol.peak_rss_mb()
    start = time.perf_counter()
    try:
        predict, make_state, spec, runtime = (_emulator if emulated else _core_ml)(request["model"])
    except Exception as exc:  # the emulator's NotEmulated, or Core ML's load error: its words, one line
        sys.exit(f"{'Core ML emulator' if emulated else 'Core ML'}: {exc}")
    load_ms = (time.perf_counter() - start) * 1000.0
    session = StatefulSession(predict, make_state, spec, request.get("prefill_len"))
    answers, metrics, latency = decoding.serve(session, request, timed=not emulated)
    if emulated:  # an emulator's timings are not a phone's
        for answer in answers:
            answer["first_token_ms"] = answer["decode_ms_per_token"] = None
    protocol.write_result(request, {
        "answers": answers, "load_ms": load_ms, "latency_ms": latency,
        "peak_rss_mb": protocol.peak_rss_mb(), "rss_before_load_mb": rss_before, "metrics": metrics,
        "runtime": runtime, "latency_note": LATENCY_NOTE if emulated else None,
        "obtained": {"outputs": "emulated", "latency": "not measured"} if emulated else {},
    })


if __name__ == "__main__":
    main()
