"""A content-addressed cache for costly intermediates (the fp32 ONNX export, later the F16 GGUF...).

An entry is a folder named by the hash of everything that shaped it; it is built in a temporary folder and
renamed into place, and carries the sha256 of each file so that a corrupted entry is rebuilt, never used.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from .hashing import file_sha256, text_sha256

_INDEX = ".edge-pack-entry.json"


def cache_root() -> Path:
    root = os.environ.get("EDGE_PACK_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-pack"
    return Path(root)


def _intact(entry: Path) -> bool:
    index = entry / _INDEX
    try:
        files = json.loads(index.read_text())["files"]
        return all(file_sha256(entry / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def cached(kind: str, key: dict, build: Callable[[Path], None]) -> Path:
    """The folder for (kind, key), built by build(folder) unless an intact entry exists."""
    entry = cache_root() / kind / text_sha256(json.dumps(key, sort_keys=True))[:32]
    if entry.is_dir() and _intact(entry):
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
    try:
        build(work)
        files = {p.relative_to(work).as_posix(): file_sha256(p) for p in sorted(work.rglob("*")) if p.is_file()}
        (work / _INDEX).write_text(json.dumps({"key": key, "files": files}, indent=1))
        if entry.exists():
            if _intact(entry):  # another process finished the same entry meanwhile
                shutil.rmtree(work, ignore_errors=True)
                return entry
            shutil.rmtree(entry)  # corrupted or half-removed: replaced, never used
        os.rename(work, entry)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return entry
