"""Output folders appear whole or not at all: work happens in a hidden sibling folder that is renamed
into place at the end, so a failure, an interrupt or a full disk leaves the previous folder (or nothing)
behind. One process at a time writes a folder: a lock file beside it says who."""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError
from .files import link_or_copy

# Work folders being written now; the watchdog removes them before it ends a stuck process.
ACTIVE: set[Path] = set()
# Set by a command whose outcome is decided once its folder is in place (`edge-pack build`): SIGINT/SIGTERM
# stay blocked after the swap, so the exit code says what happened to the folder — 0/1 it is the new one,
# 130/143 it is the old one — instead of a late signal reporting an interrupt after the folder was replaced.
HOLD_SIGNALS_AFTER_COMMIT = False
_INTERRUPTS = {signal.SIGINT, signal.SIGTERM}
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def check_disk_full(exc: BaseException, folder: Path) -> None:
    """Turn a full disk into the user's problem to solve, said plainly; other errors pass through."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        raise UserError(f"the disk holding {folder} is full ({exc.strerror}); free space or choose another "
                        f"--out; {folder} was left as it was") from None


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
def locked(out: Path):
    """Hold `.<name>.lock` beside `out` for the block. A second process fails fast, naming the holder.
    While held, leftovers of an earlier process that was killed (its hidden work folders) are removed."""
    out = out.resolve()
    parent = _writable_parent(out)
    lock_path = parent / f".{out.name}.lock"
    while True:
        try:
            handle = open(lock_path, "a+")
        except OSError as exc:
            raise UserError(f"cannot write to {parent} ({exc.strerror}); choose another --out folder") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()  # the holder's lock file stays: removing it would let a third writer in
            raise UserError(f"another edge-pack process (pid {holder}) is writing {out}; wait for it to finish "
                            "or choose another --out") from None
        # A holder that finished between our open and our lock has removed the file we locked: lock the
        # file that is there now, or two writers would each hold a lock.
        if _same_file(handle, lock_path):
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        for stale in parent.glob(f".{out.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in parent.glob(f".{out.name}.old-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield out
    finally:
        lock_path.unlink(missing_ok=True)
        handle.close()


def _same_file(handle, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


@contextmanager
def staged_folder(out: Path, keep: tuple[str, ...] = ()):
    """Yield an empty work folder that replaces `out` when the block succeeds. Entries of an existing
    `out` named in `keep` are carried over (hard-linked where possible) so a build of one target keeps
    the others. The caller holds `locked(out)`."""
    out = out.resolve()
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise UserError(f"cannot write to {out.parent} ({exc.strerror}); choose another --out folder") from None
    os.chmod(work, 0o777 & ~umask())  # mkdtemp makes it private; the bundle gets normal permissions
    ACTIVE.add(work)
    try:
        for name in keep:
            if (out / name).is_dir():
                shutil.copytree(out / name, work / name, copy_function=link_or_copy)
        yield work
        _swap(work, out)
    except OSError as exc:
        check_disk_full(exc, out)
        raise
    finally:
        ACTIVE.discard(work)
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def temporaries_in(folder: Path):
    """Make `folder` the temporary directory of this process (tempfile) and of the tools it starts (TMPDIR)
    for the block, and remove it afterwards: what a build's tools leave behind (e.g. coremltools' tmp*.mlpackage
    copies) goes with the build instead of piling up in the system's temp folder."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(folder, ignore_errors=True)


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap(work: Path, out: Path) -> None:
    """Put `work` where `out` is. An interrupt between the two renames would leave no folder at all, so
    SIGINT/SIGTERM wait until both are done (a signal that came meanwhile is delivered right after)."""
    with _interrupts_deferred():
        if not out.exists():
            os.rename(work, out)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "previous")
        os.rename(work, out)
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _interrupts_deferred():
    # Dispositions, not a signal mask: a mask holds for one thread, and the kernel hands a process's signal
    # to any thread that does not block it (torch's and onnxruntime's workers).
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {signum: signal.signal(signum, lambda number, frame: pending.append(number)) for signum in _INTERRUPTS}
    committed = False
    try:
        yield
        committed = True
    finally:
        if committed and HOLD_SIGNALS_AFTER_COMMIT:
            hold_interrupts()
        else:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for signum in pending:
                signal.raise_signal(signum)


def hold_interrupts() -> None:
    """From here on SIGINT/SIGTERM are ignored: the outcome is decided. (Python's shutdown resets the
    handlers it installed to the default, which ends the process, but leaves an ignored signal ignored.)"""
    if threading.current_thread() is threading.main_thread():
        for signum in _INTERRUPTS:
            signal.signal(signum, signal.SIG_IGN)


def write_atomic(path: Path, text: str) -> None:
    """Replace a file in one step: readers see the old content or the new, never half of it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes it private; a bundle's files are for sharing
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
