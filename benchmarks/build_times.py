"""What the MiniLM benchmarks share: their command line, and build time per precision as they print it
(the fp32 conversion first, cold when the caller points EDGE_PACK_CACHE at a fresh folder, then each
precision's conversion + validation on its own, reusing the cached fp32 file)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def timed_builds(source: str, target: str, precisions: list[str], tmp: Path, options=None) -> tuple[float, dict]:
    """(seconds of the fp32 build, {precision: seconds of its build})."""
    import edge_pack

    start = time.perf_counter()
    edge_pack.build(source, [target], ["fp32"], tmp / "export", options=options)
    export_s = time.perf_counter() - start
    build_s = {}
    for precision in precisions:
        start = time.perf_counter()
        edge_pack.build(source, [target], [precision], tmp / precision, options=options)
        build_s[precision] = time.perf_counter() - start
    return export_s, build_s


def latency_arguments(doc: str) -> argparse.Namespace:
    """--runs and --threads of the latency measurement, the MiniLM benchmarks' command line."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()
