"""edge-pack: build, measure and gate quantized models for phones, browsers and small boards.

The CLI is a thin layer over three calls, each returning the data `--json` prints:
build(source, targets, precisions, out) → manifest, bench(bundle_or_source, ...) → results,
verify(bundle) → what is missing, altered or unlisted.
"""
import os

__version__ = "0.1.0"

# edge-pack reads local files only: never let a library reach for the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from .benchmark import bench  # noqa: E402
from .verify import verify  # noqa: E402
from .pipeline import build  # noqa: E402

__all__ = ["__version__", "bench", "build", "verify"]
