"""Run a LiteRT decoder (.tflite with `prefill_<n>` and `decode` signatures over an external KV cache, as
litert-torch's generative converter writes it) with the LiteRT interpreter: greedy generation per the
protocol at the top of edge_pack/generation.py, logits at every position of each sample through the cache
path, prefill/decode speed and peak memory. Usage: python generate.py request.json

Request (harness/protocol.py, plus): "asks" (generation protocol); "inputs" optional, samples "s<i>/input_ids"
whose logits come back as "s<i>/logits"; "speed": {"prompt": [ids], "tokens": n} to time prefill and decode.
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
import numpy as np  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

import decoding  # noqa: E402
import protocol  # noqa: E402


class LiteRTSession:
    """One sequence's KV cache held as the arrays the signatures take and give back."""

    def __init__(self, path: str, threads: int):
        self.interpreter = Interpreter(model_path=path, num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        prefills = sorted((int(name.split("_")[1]), name) for name in signatures if name.startswith("prefill_"))
        if "decode" not in signatures or not prefills:
            raise SystemExit(f"{path} has no prefill_<n>/decode signatures (it has {sorted(signatures)}): "
                             "not a decoder converted by litert-torch's generative converter")
        self.prefill_len, name = prefills[-1]
        self.prefill_runner = self.interpreter.get_signature_runner(name)
        self.decode_runner = self.interpreter.get_signature_runner("decode")
        details = self.decode_runner.get_input_details()
        self.cache_shapes = {k: (tuple(v["shape"]), v["dtype"]) for k, v in details.items() if k.startswith("kv_cache_")}
        self.kv_len = int(next(iter(self.cache_shapes.values()))[0][1])  # [batch, positions, kv heads, head dim]
        self.reset()

    def reset(self) -> None:
        self.cache = {k: np.zeros(shape, dtype) for k, (shape, dtype) in self.cache_shapes.items()}

    def _run(self, runner, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        out = runner(tokens=tokens, input_pos=positions, **self.cache)
        self.cache = {k: out[k] for k in self.cache}
        return out["logits"][0]

    def prefill(self, tokens: list[int], start: int) -> np.ndarray:
        # Padding past the real tokens writes the cache beyond them; those positions are rewritten before
        # they are read (the causal mask hides them until then).
        count = len(tokens)
        padded = np.zeros((1, self.prefill_len), np.int32)
        padded[0, :count] = tokens
        positions = np.arange(start, start + self.prefill_len, dtype=np.int32)
        positions = np.minimum(positions, self.kv_len - 1)  # padding never indexes outside the cache
        return self._run(self.prefill_runner, padded, positions)[:count]

    def decode(self, token: int, pos: int) -> np.ndarray:
        return self._run(self.decode_runner, np.array([[token]], np.int32), np.array([pos], np.int32))[0]


def main() -> None:
    request = protocol.read_request(sys.argv)
    threads = int(request.get("threads", 1))
    rss_before = protocol.peak_rss_mb()
    start = time.perf_counter()
    session = LiteRTSession(request["model"], threads)
    load_ms = (time.perf_counter() - start) * 1000.0
    answers, metrics, latency = decoding.serve(session, request)
    metrics = {"threads": threads, **metrics}
    version = importlib.metadata.version("ai-edge-litert")
    protocol.write_result(request, {
        "answers": answers, "load_ms": load_ms, "latency_ms": latency, "peak_rss_mb": protocol.peak_rss_mb(),
        "rss_before_load_mb": rss_before, "threads": threads, "metrics": metrics,
        "runtime": f"LiteRT (ai-edge-litert {version}, Python Interpreter, XNNPACK CPU, prefill/decode signatures)",
    })


if __name__ == "__main__":
    main()
