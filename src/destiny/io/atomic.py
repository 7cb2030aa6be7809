"""Write a file so that it is either whole or absent: a temporary file beside the target,
flushed and fsynced, then renamed over it. On any error the temporary file is removed and the
target is left as it was.

A full disk, a quota, a read-only filesystem or a directory without write permission
(ENOSPC, EDQUOT, EROFS, EACCES, EPERM) become a ``ResourceError`` naming the target, the
reason and that nothing was written, instead of an ``OSError`` naming a temporary file; a full
disk stays a full disk where a library says "permission denied". A directory given as the
target is a ``UsageError`` naming it. The target's lock (``io.lock``) is held while it is
written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
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
    error = resource_error(path, exc)
    if error is not None:
        return error
    return OSError(exc.errno, f"cannot write {os.path.basename(path)} there: {exc.strerror or exc}", directory)


def directory_error(path: str) -> UsageError:
    return UsageError(f"cannot write {path}: it is a directory; name a file to write (in it or beside it)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    For writers that open files themselves (netCDF4, numpy.save): write to the yielded path.
    The output's lock (``io.lock``) is held meanwhile: another process writing ``path`` is
    refused, and temporaries of ``path`` that a killed writer left are removed first.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise directory_error(path)
    directory = os.path.dirname(os.path.abspath(path))
    with output_lock(path, open_error=lambda exc: create_error(path, exc)) as writer_died:
        if writer_died:  # only then: a directory of many outputs is not listed at every write
            name = os.path.basename(path)
            remove_stale_temporaries(directory, lambda target: target == name)
        with _replacing(path, directory, suffix) as tmp:
            yield tmp


@contextlib.contextmanager
def _replacing(path: str, directory: str, suffix: str) -> Iterator[str]:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=directory)
    except OSError as exc:
        raise create_error(path, exc) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        ours = exc.filename is None or os.fspath(exc.filename) in (tmp, path)  # not some other file's
        error = resource_error(path, exc) if ours else None
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
                newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
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
