"""Time and peak memory of one step of this process (an export, a conversion), for the manifest."""
from __future__ import annotations

import resource
import time
from contextlib import contextmanager


def _reset_peak() -> bool:
    """Linux lets a process reset its own peak-RSS mark (VmHWM); elsewhere the peak is since start."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@contextmanager
def step_usage():
    """Yields a dict that holds {"seconds", "peak_rss_mb", "peak_is_per_step"} once the block ends."""
    usage: dict = {}
    per_step = _reset_peak()
    start = time.perf_counter()
    try:
        yield usage
    finally:
        usage.update(seconds=round(time.perf_counter() - start, 3), peak_rss_mb=round(_peak_rss_mb(), 1),
                     peak_is_per_step=per_step)
