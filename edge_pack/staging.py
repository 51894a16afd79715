"""Output folders appear whole or not at all: work happens in a hidden sibling folder that is renamed
into place at the end, so a failure leaves the previous folder (or nothing) behind."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


def _writable_parent(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder path")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {parent} ({exc.strerror}); choose another --out folder") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write to {parent} (permission denied); choose another --out folder")
    return parent


@contextmanager
def staged_folder(out: Path, keep: tuple[str, ...] = ()):
    """Yield an empty work folder that replaces `out` when the block succeeds. Entries of an existing
    `out` named in `keep` are carried over (hard-linked where possible) so a build of one target keeps
    the others."""
    out = out.resolve()
    parent = _writable_parent(out)
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise UserError(f"cannot write to {parent} ({exc.strerror}); choose another --out folder") from None
    os.chmod(work, 0o777 & ~_umask())  # mkdtemp makes it private; the bundle gets normal permissions
    try:
        for name in keep:
            if (out / name).is_dir():
                shutil.copytree(out / name, work / name, copy_function=_link_or_copy)
        yield work
        _swap(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _swap(work: Path, out: Path) -> None:
    if not out.exists():
        os.rename(work, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / "previous")
    os.rename(work, out)
    shutil.rmtree(old, ignore_errors=True)


def write_atomic(path: Path, text: str) -> None:
    """Replace a file in one step: readers see the old content or the new, never half of it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
