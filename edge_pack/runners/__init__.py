"""Runners: one per runtime. Each measures artifact files on the given samples and returns a RunResult;
the device-side half lives in harness/ and is the same code on this machine and on a device. What a runner
is, and the data it takes and gives, is stated in edge_pack/contracts.py."""
from __future__ import annotations

from dataclasses import replace

from ..contracts import RunOptions, RunResult, get_runner, runtime_missing

__all__ = ["RunOptions", "RunResult", "get_runner", "runtime_here", "runtime_missing", "with_asks"]


def runtime_here(name: str) -> str | None:
    """What this machine runs for the runner `name` when it is not the runtime itself (Core ML on Linux:
    the emulator), from the runner's optional here(); None when the runtime itself runs here."""
    try:
        runner = get_runner(name)
    except ImportError:
        return None
    note = getattr(runner, "here", None)
    return note() if note else None


def with_asks(options: RunOptions, asks) -> RunOptions:
    """The options with a decoder's generation asks (edge_pack/generation.Ask or their JSON) in the request."""
    if not asks:
        return options
    return replace(options, extra={**options.extra, "asks": [a if isinstance(a, dict) else a.to_json() for a in asks]})
