"""Converters and runtimes are noisy (tracer warnings, native logs). Their output is captured while they
work and replayed only when the step fails, or shown as it comes with --verbose. Stdout stays clean
either way, so `--json` output is never mixed with a library's chatter."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager

VERBOSE = False  # set by the CLI's -v

# The process's own stderr, kept aside before any capture redirects fd 2.
_TERMINAL_STDERR = os.dup(2)


def terminal_stderr() -> int:
    """A descriptor that reaches the user's stderr even while a capture is active."""
    return _TERMINAL_STDERR


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@contextmanager
def captured():
    """Capture fd 1 and fd 2 (Python and native writers alike) for the duration of the block; on an
    exception, the captured tail is attached to it as a note."""
    sys.stdout.flush()
    sys.stderr.flush()
    if VERBOSE:  # show everything, but on stderr
        saved_out = os.dup(1)
        os.dup2(2, 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved_out, 1)
            os.close(saved_out)
        return
    with tempfile.TemporaryFile(mode="w+b") as buffer:
        saved = os.dup(1), os.dup(2)
        os.dup2(buffer.fileno(), 1)
        os.dup2(buffer.fileno(), 2)
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except BaseException as exc:
            _restore(saved)
            buffer.seek(0)
            text = tail(buffer.read().decode(errors="replace"))
            if text:
                exc.add_note(text)
            raise
        else:
            _restore(saved)
        finally:
            logging.disable(previous)


def _restore(saved: tuple[int, int]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    os.close(saved[0])
    os.close(saved[1])
