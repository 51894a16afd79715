"""Bounds on work that runs in this process (a converter step): past the deadline, the work folders are
removed and the process ends with one line, since native code stuck in a C call cannot be interrupted.
Runtimes need no watchdog: they run in child processes with their own timeout (runners/local.py)."""
from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager

from . import quiet, staging

EXIT_TIMEOUT = 4


@contextmanager
def deadline(seconds: float | None, what: str):
    if not seconds:
        yield
        return
    timer = threading.Timer(seconds, _expire, (what, seconds))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _expire(what: str, seconds: float) -> None:
    for work in list(staging.ACTIVE):
        shutil.rmtree(work, ignore_errors=True)
    message = (f"edge-pack: error: {what} took longer than {seconds:g} s; nothing was written (raise the limit with "
               "--timeout if the model is just large)\n")
    os.write(quiet.terminal_stderr(), message.encode())
    os._exit(EXIT_TIMEOUT)
