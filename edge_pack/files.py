"""File helpers every part shares: a model's name made safe for a file name, hard links where the file
system allows them, and copying files into a folder."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path


def safe_stem(name: str, separator: str = "-") -> str:
    """`name` with every run of characters other than letters, digits, '.', '_' and '-' replaced by
    `separator`, and no separator or dot at either end ("model" when nothing is left)."""
    return re.sub(r"[^A-Za-z0-9._-]+", separator, name).strip(separator + ".") or "model"


def link_or_copy(source: str | Path, destination: str | Path) -> None:
    """A hard link (no space, no time) where the file system allows one, else a copy."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def copy_into(files: list[Path], folder: Path) -> list[Path]:
    """Copy each file into `folder` under its own name; returns the copies."""
    copies = []
    for path in files:
        shutil.copy2(path, folder / path.name)
        copies.append(folder / path.name)
    return copies
