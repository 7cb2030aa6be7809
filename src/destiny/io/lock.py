"""One writer an output: an exclusive lock held while a file is produced, and the temporary
files of writers that died removed.

The lock is ``fcntl.flock`` on a hidden file beside the target, ``.<name>.lock``, holding the
writer's pid: the kernel releases it when the process ends, however it ends, so a lock never
outlives its writer. A second process asking for it is refused at once (``ResourceError``
naming the pid), never made to wait. The same process may ask again (a command holds the lock
of its output for the whole run; the atomic write inside asks for it once more). Where there is
no ``fcntl`` (Windows) or the filesystem does not lock, nothing is locked and nothing is
removed: writing works as it did without the lock.

A temporary file of ``io.atomic`` is named ``.<name>.<8 characters>.tmp<suffix>`` (mkstemp):
``remove_stale_temporaries`` deletes those whose target is not locked by a live process, and
the lock files killed writers left (a writer that ends removes its own).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from typing import Callable, Iterator

from destiny.errors import ResourceError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

# mkstemp's names: prefix, 8 characters of tempfile's alphabet, suffix (io.atomic: ".tmp…")
_TEMPORARY = re.compile(r"\A\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")
_LOCK = re.compile(r"\A\.(?P<target>.+)\.lock\Z")
# written in the lock beside the pid: tells this process from one of the same pid in another
# container sharing the directory (a pid namespace of its own)
_TOKEN = os.urandom(8).hex()
# what flock answers on a filesystem that cannot lock (some NFS or FUSE mounts)
_CANNOT_LOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS}


def lock_path(path: str | os.PathLike) -> str:
    """``.<name>.lock`` beside ``path``."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(directory, f".{name}.lock")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, open_error: Callable[[OSError], Exception] | None = None) -> Iterator[bool]:
    """Hold the exclusive lock of the output ``path`` for the block; yields whether a writer
    died holding it (its lock file was left: look for its temporaries).

    ResourceError "… is being written by another destiny process (pid …)" when another process
    holds it; ``open_error(exc)``: the exception to raise when the lock file cannot be created
    (the directory is missing, read-only or full), by default the OSError itself.
    """
    fd, left = _acquire(os.fspath(path), open_error) if fcntl is not None else (None, False)
    try:
        yield left
    finally:
        if fd is not None:
            _release(os.fspath(path), fd)


def _acquire(path: str, open_error) -> tuple[int | None, bool]:
    """(the locked file descriptor, whether the lock file was there already); None where the
    lock is this process's already or the filesystem cannot lock."""
    lock = lock_path(path)
    while True:
        try:
            fd, left = _open_lock(lock)
        except OSError as exc:
            raise (open_error(exc) if open_error is not None else exc) from None
        try:
            if _ours(fd) and not _try_flock(fd):
                os.close(fd)
                return None, False  # this process holds it (the command around this write)
            _flock_soon(fd)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise ResourceError(f"{path} is being written by another destiny process (pid {pid or 'unknown'}); wait "
                                "for it to finish, or write to another file") from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in _CANNOT_LOCK:
                return None, False
            raise
        if _same_file(fd, lock):  # not a file its previous holder unlinked meanwhile
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, _identity().encode(), 0)
    return fd, left


def _identity() -> str:
    return f"{os.getpid()} {_TOKEN}\n"


def _ours(fd: int) -> bool:
    """Whether the lock file says this process holds it."""
    return os.pread(fd, 64, 0).decode("ascii", "replace") == _identity()


def _open_lock(lock: str) -> tuple[int, bool]:
    """(descriptor, whether the file existed): a lock file outlives only a killed holder."""
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(lock, flags | os.O_CREAT | os.O_EXCL, 0o666), False
    except FileExistsError:
        pass
    try:
        return os.open(lock, flags), True
    except FileNotFoundError:  # its holder just removed it
        return os.open(lock, flags | os.O_CREAT, 0o666), False


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _flock_soon(fd: int, wait_s: float = 0.2) -> None:
    """flock(LOCK_EX), retried for a moment: ``remove_stale_temporaries`` of another process
    may hold the lock for the instant of its test. BlockingIOError when still held."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _release(path: str, fd: int) -> None:
    lock = lock_path(path)
    try:
        if _same_file(fd, lock):
            with contextlib.suppress(OSError):
                os.unlink(lock)
    finally:
        os.close(fd)  # releases the lock


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def _holder(fd: int, wait_s: float = 0.5) -> int | None:
    """The pid written in a lock file (its holder writes it just after locking: wait a little)."""
    deadline = time.monotonic() + wait_s
    while True:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
        if text and text[0].isdigit():
            return int(text[0])
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def _locked_by_another(target: str, drop: bool = False) -> bool:
    """Whether a live process other than this one holds the lock of ``target``; ``drop``: remove
    the lock file when nobody holds it (its holder was killed)."""
    if fcntl is None:
        return True  # cannot tell: treat every temporary as live
    lock = lock_path(target)
    try:
        fd = os.open(lock, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if drop and _same_file(fd, lock):  # held: a writer opening it meanwhile finds it gone and retries
            os.unlink(lock)
    except BlockingIOError:
        return not _ours(fd)
    except OSError:
        return True  # a filesystem without locks: cannot tell
    finally:
        os.close(fd)
    return False


def remove_stale_temporaries(directory: str | os.PathLike, accept: Callable[[str], bool]) -> list[str]:
    """Delete the temporary files in ``directory`` of the targets ``accept(name)`` chooses
    whose writer is gone (no live process holds the target's lock), and the lock files such
    writers left; returns the temporaries' paths."""
    directory = os.fspath(directory) or "."
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name) or _LOCK.match(entry.name)
        if match is None or not accept(match.group("target")):
            continue
        with contextlib.suppress(OSError):
            if not entry.is_file(follow_symlinks=False):
                continue
            if match.re is _LOCK:
                _locked_by_another(os.path.join(directory, match.group("target")), drop=True)
                continue
            if _locked_by_another(os.path.join(directory, match.group("target"))):
                continue
            os.unlink(entry.path)
            removed.append(entry.path)
    return removed
