"""Runner double: the real onnxruntime runner's outputs, with timings from a machine whose load flips
between runs: every other run takes 50 ms, the others 150 ms, each with random jitter. The p50 of such
timings lands on either side of a 100 ms limit by chance (the flip issue 14 item 4 saw on a busy machine)."""
from __future__ import annotations

import random

from edge_pack.runners import ort


def run(files, samples, latency_input, options):
    result = ort.run(files, samples, latency_input, options)
    base = random.choice((0, 1))
    result.latency_ms = [(50.0 if (i + base) % 2 else 150.0) + random.uniform(-5, 5)
                         for i in range(len(result.latency_ms))]
    return result
