"""The harness's own measurements of itself (harness/protocol.py), which every runner reports."""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")


def test_peak_memory_is_the_harness_own_not_its_parents():
    """A harness started by a process holding a lot of memory (a bench with torch loaded) reports its own
    peak: Linux's ru_maxrss would carry the parent's over through fork and exec."""
    held = bytearray(400 * 1024 * 1024)
    for at in range(0, len(held), 4096):  # touched, so resident
        held[at] = 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 > 400
    code = "import sys; sys.path.insert(0, sys.argv[1]); import protocol; print(protocol.peak_rss_mb())"
    child = subprocess.run([sys.executable, "-c", code, str(ROOT / "harness")], capture_output=True, text=True,
                           check=True)
    assert 1 < float(child.stdout) < 200, child.stdout
    del held
