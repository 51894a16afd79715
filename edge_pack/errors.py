"""The errors a user can act on. The CLI prints them as one line and exits with their code."""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the job ran, but a gate failed: no candidate meets the SLA, a file does not verify
EXIT_USAGE = 2  # bad input: nothing was built
# 3 a bug, 4 a step ran out of time (cli.py, watchdog.py)
EXIT_UNVERIFIED = 5  # nothing failed, but a limit could not be checked here (e.g. latency on an emulator)


class UserError(Exception):
    """Bad input or environment: the message says what was wrong and what to do."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConversionError(Exception):
    """One artifact could not be built or failed its validation; the rest of the build goes on."""


class NotApplicable(ConversionError):
    """The precision does not apply to this model (e.g. 4-bit MatMul weights in a model without MatMul);
    the candidate is skipped with the reason, which is not a build failure."""


class RunnerError(Exception):
    """A runtime failed to load or run an artifact; the message carries the runtime's own words."""
