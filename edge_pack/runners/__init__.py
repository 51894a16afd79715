"""Runners: one per runtime. Each measures artifact files on the given samples and returns a RunResult;
the device-side half lives in harness/ and is the same code on this machine and on a device. What a runner
is, and the data it takes and gives, is stated in edge_pack/contracts.py."""
from __future__ import annotations

from ..contracts import RunOptions, RunResult, get_runner, runtime_missing

__all__ = ["RunOptions", "RunResult", "get_runner", "runtime_missing"]
