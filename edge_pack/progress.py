"""Progress on stderr for long work. It writes to its own copy of the terminal's stderr, so it stays
visible while noisy libraries are being captured (quiet.py)."""
from __future__ import annotations

import os
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .quiet import terminal_stderr


class Steps:
    """A rich progress bar, or nothing when disabled (API calls, --json pipelines that want silence)."""

    def __init__(self, progress: Progress | None):
        self._progress = progress
        self._task = None

    def start(self, description: str, total: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(description, total=total)

    def step(self, description: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=description)

    def advance(self) -> None:
        if self._task is not None:
            self._progress.advance(self._task)

    def note(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, highlight=False)


def terminal_console() -> Console:
    return Console(file=os.fdopen(os.dup(terminal_stderr()), "w", buffering=1), stderr=True)


@contextmanager
def steps(enabled: bool):
    if not enabled:
        yield Steps(None)
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    console = terminal_console()
    try:
        with Progress(*columns, console=console) as progress:
            try:
                yield Steps(progress)
            except BaseException:
                progress.live.transient = True  # the error message is the last word, not a half-full bar
                raise
    finally:
        if not console.is_terminal:
            console.file.write("\n")
        console.file.flush()
