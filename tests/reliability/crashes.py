"""Runner double: segfaults on the q8 artifact (see faulty_runtimes.py)."""
from .faulty_runtimes import _run


def run(files, samples, latency_input, options):
    return _run(files, samples, latency_input, options, "crash")
