"""Write a file so that it is either whole or absent: a temporary file beside the target,
flushed and fsynced, then renamed over it. On any error the temporary file is removed and the
target is left as it was.

A full disk, a quota, a read-only filesystem or a directory without write permission
(ENOSPC, EDQUOT, EROFS, EACCES, EPERM) become a ``ResourceError`` naming the target, the
reason and that nothing was written, instead of an ``OSError`` naming a temporary file; a full
disk stays a full disk where a library says "permission denied". A directory given as the
target is a ``UsageError`` naming it. The target's lock (``io.lock``) is held while it is
written. An existing target that no rename can replace (``replace_problem``: immutable or
append-only, or another user's in a sticky directory) is named with the reason, not blamed on
its directory.

A command that writes several files commits them as a set (``staged``): each is written to its
temporary, and all are renamed into place only once every one is whole, with interrupts held
back meanwhile; an error or a Ctrl-C before that removes every temporary and changes no target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import sys
import tempfile
import threading
from typing import IO, Iterator

from destiny.errors import ResourceError, UsageError
from destiny.io.lock import output_lock, remove_stale_temporaries

# errno → (what happened, how to fix it)
_RESOURCE_ERRNOS = {
    errno.ENOSPC: ("the disk is full", "free space there or write to another disk"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space there or write to another disk"),
    errno.EROFS: ("the filesystem is read-only", "write to another directory"),
    errno.EACCES: ("permission denied", "write to a directory you may write to, or change its permissions"),
    errno.EPERM: ("the operation is not permitted", "write to a directory you may write to"),
}


def resource_error(path: str, exc: OSError) -> ResourceError | None:
    """The ResourceError for an OSError of writing ``path`` (None: not a resource fault).

    EACCES/EPERM on a full disk is reported as the full disk: netCDF-C turns any failure of
    HDF5 to create a file into EACCES."""
    code = exc.errno
    directory = os.path.dirname(os.path.abspath(path))
    if code in (errno.EACCES, errno.EPERM) and _nearly_full(directory):
        code = errno.ENOSPC
    known = _RESOURCE_ERRNOS.get(code)
    if known is None:
        return None
    what, fix = known
    return ResourceError(f"cannot write {path}: {what} ({errno.errorcode[code]} in {directory}); nothing "
                         f"was written and no partial file is left; {fix}")


def create_error(path: str, exc: OSError) -> Exception:
    """What to raise when a file cannot be created beside ``path`` (its temporary or its lock):
    the directory is missing or not one, or a resource fault; else ``exc`` itself."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            return NotADirectoryError(errno.ENOTDIR, f"cannot write {os.path.basename(path)} there: it is not a "
                                      "directory; name a file in a directory", directory)
        return FileNotFoundError(errno.ENOENT, f"cannot write {os.path.basename(path)} there: the directory "
                                 "does not exist; create it or name a file in an existing directory", directory)
    attribute = _attribute(directory) if exc.errno == errno.EPERM else None
    if attribute is not None:
        name, letter = attribute
        return ResourceError(f"cannot write {path}: its directory {directory} is {name} (chattr +{letter}), so no "
                             f"file can be created in it; clear the attribute (chattr -{letter} {directory}, as root) "
                             "or write to another directory")
    error = resource_error(path, exc)
    if error is not None:
        return error
    return OSError(exc.errno, f"cannot write {os.path.basename(path)} there: {exc.strerror or exc}", directory)


# linux/fs.h, 64-bit: FS_IOC_GETFLAGS (_IOR('f', 1, long)) and the flags that forbid replacing a file
# (elsewhere the ioctl fails and no flag is seen)
_FS_IOC_GETFLAGS = 0x80086601
_FLAGS = ((0x10, "immutable", "i"), (0x20, "append-only", "a"))


def _inode_flags(path: str) -> int:
    """The file attributes (chattr) of ``path``; 0 where the system or filesystem has none."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (ImportError, OSError):
        return 0
    try:
        return int.from_bytes(fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8))[:4], sys.byteorder)  # the kernel's int
    except OSError:  # ENOTTY: a filesystem without attributes
        return 0
    finally:
        os.close(fd)


def _attribute(path: str) -> tuple[str, str] | None:
    """("immutable", "i") or ("append-only", "a") when that attribute (chattr) of ``path`` is set."""
    flags = _inode_flags(path)
    return next(((name, letter) for bit, name, letter in _FLAGS if flags & bit), None)


def replace_problem(path: str | os.PathLike) -> str | None:
    """Why renaming a new file over the existing ``path`` would fail, with the fix, or None:
    the file or its directory is immutable or append-only (``chattr +i``/``+a``: not even root
    may replace it), or the directory is sticky (as /tmp) and the file another user's."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st, dst = os.lstat(path), os.stat(directory)
    except OSError:
        return None  # nothing to replace
    for target, what in ((path, "it is"), (directory, f"its directory {directory} is")):
        attribute = _attribute(target) if target != path or stat.S_ISREG(st.st_mode) else None
        if attribute is not None:
            name, letter = attribute
            return (f"{what} {name} (chattr +{letter}), so no rename can replace the file; clear the attribute "
                    f"(chattr -{letter} {target}, as root) or name another file")
    euid = os.geteuid() if hasattr(os, "geteuid") else 0
    if euid != 0 and dst.st_mode & stat.S_ISVTX and st.st_uid != euid and dst.st_uid != euid:
        return (f"it belongs to another user (uid {st.st_uid}) and {directory} is a sticky directory (mode "
                f"{stat.S_IMODE(dst.st_mode):o}, as /tmp), where only a file's owner may replace it; remove it as "
                "its owner, or name another file")
    return None


def replace_error(path: str) -> ResourceError | None:
    """The ResourceError for an existing ``path`` that cannot be replaced (``replace_problem``)."""
    problem = replace_problem(path)
    if problem is None:
        return None
    return ResourceError(f"cannot write {path}: it exists and cannot be replaced: {problem}; nothing was written")


def directory_error(path: str) -> UsageError:
    return UsageError(f"cannot write {path}: it is a directory; name a file to write (in it or beside it)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", *, stage: Staged | None = None) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path`` (with
    ``stage``: when the stage commits, with the other files of its set).

    For writers that open files themselves (netCDF4, numpy.save): write to the yielded path.
    The output's lock (``io.lock``) is held meanwhile: another process writing ``path`` is
    refused, and temporaries of ``path`` that a killed writer left are removed first.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise directory_error(path)
    directory = os.path.dirname(os.path.abspath(path))
    with contextlib.ExitStack() as held:
        lock = output_lock(path, open_error=lambda exc: create_error(path, exc))
        writer_died = stage.hold(lock) if stage is not None else held.enter_context(lock)  # a set: until it commits
        if writer_died:  # only then: a directory of many outputs is not listed at every write
            name = os.path.basename(path)
            remove_stale_temporaries(directory, lambda target: target == name)
        with _replacing(path, directory, suffix, stage) as tmp:
            yield tmp


class Staged:
    """The files of one set (``staged``): their temporaries, renamed over their targets at once
    by ``commit``, and the targets' locks, held until then."""

    def __init__(self, stack: contextlib.ExitStack):
        self._stack = stack
        self._staged: list[tuple[str, str]] = []  # (temporary, target), in the order written

    def hold(self, lock):
        """Enter ``lock`` (a context manager) until the set is committed or dropped."""
        return self._stack.enter_context(lock)

    def add(self, tmp: str, path: str) -> None:
        self._staged.append((tmp, path))

    def commit(self) -> None:
        """Rename every temporary over its target, interrupts held back (a Ctrl-C acts after the
        last rename). A target found unreplaceable first stops it with nothing renamed."""
        for tmp, path in self._staged:
            error = replace_error(path)
            if error is not None:
                raise error
        with _interrupts_held():
            for i, (tmp, path) in enumerate(self._staged):
                try:
                    os.replace(tmp, path)
                except OSError as exc:  # the checks before make this unlikely; the renamed stay
                    self._staged = self._staged[i:]
                    error = replace_error(path) or resource_error(path, exc)
                    if error is None:
                        raise
                    raise error from exc
            directories = {os.path.dirname(os.path.abspath(path)) for _, path in self._staged}
            self._staged = []
        for directory in sorted(directories):
            _fsync_dir(directory)

    def drop(self) -> None:
        """Remove every temporary not renamed."""
        for tmp, _ in self._staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._staged = []


@contextlib.contextmanager
def staged() -> Iterator[Staged]:
    """Write several outputs as one set: all replaced, or none.

        with staged() as stage:
            write_netcdf(out, dataset, stage=stage)
            write_index(features, index, stage=stage)

    Each writer given ``stage`` writes its temporary whole (flushed, fsynced) and keeps it;
    when the block ends without error, every target is replaced (``Staged.commit``). On any
    error or interrupt in the block, every temporary is removed and no target changes.
    """
    with contextlib.ExitStack() as stack:
        stage = Staged(stack)
        try:
            yield stage
            stage.commit()
        finally:
            stage.drop()


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT and SIGTERM received in the block are acted on (their handlers run) after it, in
    the main thread, where Python runs signal handlers; elsewhere nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(number)
        if handler is not None:  # None: a handler not set from Python, left alone
            previous[number] = signal.signal(number, lambda received, frame: caught.append(received))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in caught:
            signal.raise_signal(number)  # now: KeyboardInterrupt, or the end of the process


@contextlib.contextmanager
def _replacing(path: str, directory: str, suffix: str, stage: Staged | None = None) -> Iterator[str]:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=directory)
    except OSError as exc:
        raise create_error(path, exc) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        _fsync_file(tmp)
        if stage is not None:
            stage.add(tmp, path)
            return  # renamed when the stage commits
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        ours = exc.filename is None or os.fspath(exc.filename) in (tmp, path)  # not some other file's
        error = (replace_error(path) or resource_error(path, exc)) if ours else None
        if ours and exc.errno == errno.EISDIR:
            error = directory_error(path)
        if error is None:
            raise
        raise error from exc
    except BaseException as exc:
        full = not isinstance(exc, (KeyboardInterrupt, SystemExit)) and _nearly_full(directory)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if full:  # a library (netCDF4/HDF5) that reports ENOSPC as its own error
            raise ResourceError(f"cannot write {path}: writing failed ({type(exc).__name__}: {exc}) with the disk "
                                f"full ({directory}); nothing was written and no partial file is left; free space "
                                "there or write to another disk") from exc
        raise
    _fsync_dir(directory)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None, *, stage: Staged | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success
    (with ``stage``: when the stage commits)."""
    if "b" in mode:
        encoding = None
    with atomic_path(path, stage=stage) as tmp:
        with open(tmp, mode, encoding=encoding, newline=newline) as stream:
            yield stream


def _nearly_full(directory: str, margin: int = 1 << 20) -> bool:
    """Whether less than ``margin`` bytes are free for this user in ``directory``."""
    try:
        st = os.statvfs(directory)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False
    return st.f_bavail * st.f_frsize < margin


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
