"""Run one .mlpackage in the MIL emulator (Linux and other systems without Core ML): the package's own
program, weights decompressed as Core ML does, ops executed in torch. Outputs only: an emulator's timings
are not a device's. Usage: python emulate.py request.json (see harness/protocol.py); the request may set
"fp32": true to run float math in fp32 instead of the program's own types."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

import common  # noqa: E402
import protocol  # noqa: E402
from mil_emulator import Emulator, NotEmulated  # noqa: E402

LATENCY_NOTE = "emulated — no device latency"


def main() -> None:
    request = protocol.read_request(sys.argv)
    torch.set_num_threads(int(request.get("threads", 1)))
    fp32 = bool(request.get("fp32", False))

    def load():
        emulator = Emulator(request["model"], fp32=fp32)
        return emulator.predict, emulator.spec

    types = "fp32 math" if fp32 else "the program's own float types"
    try:
        common.measure(request, load, f"Core ML emulator (MIL program in torch {torch.__version__}, {types})",
                       latency_note=LATENCY_NOTE)
    except NotEmulated as exc:
        sys.exit(f"Core ML emulator: {exc}")


if __name__ == "__main__":
    main()
