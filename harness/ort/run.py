"""Run one ONNX file with onnxruntime: load time, outputs for each sample, latency, peak memory.
Usage: python run.py request.json (see harness/protocol.py).

A decoder with a KV cache (past_key_values.* inputs) runs as generation does (decoder.py): each sample's
logits come through its own cache path, prefill then one token at a time; the request's generation asks
get greedy answers; the latency is the time to the first token of the latency prompt."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnxruntime as ort  # noqa: E402

import protocol  # noqa: E402
import decoding  # noqa: E402
from decoder import Decoder, is_decoder, logits_through_cache  # noqa: E402


def main() -> None:
    request = protocol.read_request(sys.argv)
    samples, latency_input = protocol.load_inputs(request["inputs"])
    threads = int(request.get("threads", 1))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # x86 CPUs without VNNI (AVX2, e.g. AMD EPYC before Zen 4) multiply u8 activations by s8 weights with a
    # saturating 16-bit step: an int8 model answers wrong there (a test classifier's q8 fell from cosine
    # 1.000 to 0.879) and right on every other CPU and in the browser. The exact U8U8 path costs some speed
    # on those CPUs only; a measurement that depends on the host's instruction set is not the artifact's.
    options.add_session_config_entry("session.x64quantprecision", "1")
    if threads > 1:
        # Spinning worker threads starve each other on a small, busy machine and latency collapses.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session, load_ms, rss_before = protocol.timed_load(
        lambda: ort.InferenceSession(request["model"], options, providers=["CPUExecutionProvider"]))
    extra = {}
    if is_decoder(session):
        outputs, latency, extra = _generate(Decoder(session), samples, latency_input, request)
    else:
        outputs, latency = _run(session, samples, latency_input, request)
    protocol.save_outputs(request["outputs"], outputs)
    protocol.write_result(request, {
        "load_ms": load_ms, "latency_ms": latency, "peak_rss_mb": protocol.peak_rss_mb(),
        "rss_before_load_mb": rss_before, "threads": threads,
        "runtime": f"onnxruntime {ort.__version__} (Python, CPUExecutionProvider)", **extra,
    })


def _run(session, samples, latency_input, request):
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    outputs = [dict(zip(names, session.run(None, {k: v for k, v in s.items() if k in wanted}))) for s in samples]
    latency = []
    if latency_input is not None:
        feeds = {k: v for k, v in latency_input.items() if k in wanted}
        latency = protocol.time_request(request, lambda: session.run(None, feeds))
    return outputs, latency


def _tokens(sample: dict) -> list:
    ids = sample["input_ids"].reshape(-1)
    mask = sample.get("attention_mask")
    return [int(t) for t in (ids if mask is None else ids[mask.reshape(-1) > 0])]


def _generate(session, samples, latency_input, request):
    outputs = [{"logits": logits_through_cache(session, _tokens(s))[None]} for s in samples]
    answers = decoding.answers(session, request.get("asks") or [])
    latency = []
    if latency_input is not None:
        prompt = _tokens(latency_input)

        def prefill():
            session.reset()
            session.prefill(prompt, 0)

        latency = protocol.time_request(request, prefill)
    return outputs, latency, {"answers": answers}


if __name__ == "__main__":
    main()
