"""Run one .mlpackage with Core ML itself (macOS): load + compile time, outputs for each sample, latency,
peak memory. Usage: python run.py request.json (see harness/protocol.py); the request may name
"compute_units": all | cpu | cpu-gpu | cpu-ne."""
from __future__ import annotations

import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coremltools as ct  # noqa: E402

import common  # noqa: E402
import protocol  # noqa: E402

COMPUTE_UNITS = {"all": ct.ComputeUnit.ALL, "cpu": ct.ComputeUnit.CPU_ONLY, "cpu-gpu": ct.ComputeUnit.CPU_AND_GPU,
                 "cpu-ne": ct.ComputeUnit.CPU_AND_NE}


def main() -> None:
    request = protocol.read_request(sys.argv)
    if sys.platform != "darwin":
        sys.exit("Core ML runs only on macOS; on other systems use the coreml_emulator runtime")
    units = request.get("compute_units", "all")

    def load():
        # MLModel compiles the package for this Mac and loads it: that is the load time an app pays.
        model = ct.models.MLModel(request["model"], compute_units=COMPUTE_UNITS[units])
        return model.predict, model.get_spec()

    common.measure(request, load, f"Core ML (coremltools {ct.__version__}, macOS {platform.mac_ver()[0]}, "
                                  f"compute units {units})")


if __name__ == "__main__":
    main()
