"""Test doubles for runtimes that misbehave: no real runtime here hangs or segfaults on demand, so these
wrap the real onnxruntime harness and fail on one artifact (the q8 file, model_quantized.onnx) only.

Used as a target's runtime by dotted name ("reliability.hangs" / "reliability.crashes", tests/ on PYTHONPATH) from a user
target TOML; each module-level run() is a runner, and this file is also the harness script it starts."""
from __future__ import annotations

import faulthandler
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _run(files, samples, latency_input, options, mode):
    from edge_pack.runners.local import run_harness

    return run_harness(str(HERE), files[0], samples, latency_input, options, extra={"mode": mode})


def main() -> None:
    import json

    request = json.loads(Path(sys.argv[1]).read_text())
    if "model_quantized" in request["model"]:
        print(f"fault injected: {request['mode']}", file=sys.stderr, flush=True)
        if request["mode"] == "hang":
            while True:
                time.sleep(60)
        faulthandler.disable()
        os.kill(os.getpid(), 11)  # SIGSEGV, as a native library's crash would end the process
    from edge_pack.resources import harness_dir

    sys.argv[0] = str(harness_dir() / "ort" / "run.py")
    sys.path.insert(0, str(harness_dir()))
    import runpy

    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
