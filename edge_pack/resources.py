"""Where the declarative targets and the on-device harness live, in a checkout and in an installed wheel."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    # A wheel carries them inside the package (see pyproject.toml); a checkout keeps them at the repo root.
    for candidate in (_PACKAGE / f"_{name}", _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"edge-pack is installed without its {name}/ folder; reinstall edge-pack")


def targets_dir() -> Path:
    return _find("targets")


def harness_dir() -> Path:
    return _find("harness")


def data_file(name: str) -> Path:
    return _PACKAGE / "data" / name
