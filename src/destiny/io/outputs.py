"""What a command writes, checked before it does any work (``guard``): every output is a file
distinct from every input and from the other outputs (the same inode, not only the same name:
symbolic and hard links count); no output is a directory or a special file, or lies in a
missing directory or one this process cannot write, or is an existing file that no rename can
replace (immutable, or another user's in a sticky directory: ``atomic.replace_problem``); each
output is locked against other Destiny processes for the whole command (``io.lock``), and
temporaries that a killed writer of it left are removed. ``check_free_space`` compares an
estimated size with the disk's free space once the command knows the size (a network's
parameter count).

Each failure is a one-line error naming the paths and the fix, raised before anything is read
or trained, so nothing is lost and nothing is half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from destiny.errors import ResourceError, UsageError
from destiny.io.atomic import create_error, replace_problem
from destiny.io.lock import output_lock, remove_stale_temporaries

NETWORK_FILE_OVERHEAD = 1 << 16  # bytes of a network file besides its float32 parameters (attributes, header)


@dataclass
class CommandFiles:
    """The files of one command line: (flag, path) pairs; a path of None is left out. A flag
    may be both an input and an output (a file updated in place: ``generate -s``)."""

    inputs: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, inputs: Iterable[tuple[str, object]] = (), outputs: Iterable[tuple[str, object]] = ()) -> "CommandFiles":
        def kept(pairs):
            return [(flag, os.fspath(path)) for flag, path in pairs if path is not None and os.fspath(path) != ""]

        return cls(kept(inputs), kept(outputs))


def _identity(path: str) -> tuple:
    """(device, inode) of an existing file, else its resolved name."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return ("name", os.path.realpath(path))
    return ("inode", st.st_dev, st.st_ino)


def _how(a: str, b: str) -> str:
    """How two names of one file are related, as a phrase to append."""
    if os.path.abspath(a) == os.path.abspath(b):
        return ""
    if os.path.realpath(a) == os.path.realpath(b):
        return " (through a symbolic link)"
    return " (a hard link to it)"


def _within(path: str, directory: str) -> bool:
    """Whether ``path`` is directly in ``directory`` (where a directory input's files are read)."""
    try:
        return os.path.samefile(os.path.dirname(os.path.abspath(path)) or ".", directory)
    except OSError:
        return False


def check_distinct(files: CommandFiles) -> None:
    """UsageError when an output is the same file as an input or another output, or lies in
    an input directory (whose every file is read)."""
    outputs = [(flag, path, _identity(path)) for flag, path in files.outputs]
    for flag, path, ident in outputs:
        for in_flag, in_path in files.inputs:
            if in_flag == flag:
                continue  # a file the command updates in place
            if os.path.isdir(in_path):
                if _within(path, in_path):
                    raise UsageError(f"{flag} {path} is in the directory {in_flag} {in_path}, every file of which is "
                                     f"read as input; write {flag} to another directory")
            elif _identity(in_path) == ident:
                raise UsageError(f"{flag} {path} is the same file as {in_flag} {in_path}{_how(path, in_path)}, an "
                                 f"input of this command: writing it would destroy the input; name another file "
                                 f"for {flag}")
    for i, (flag, path, ident) in enumerate(outputs):
        for other_flag, other, other_ident in outputs[i + 1:]:
            if other_flag != flag and ident == other_ident:
                raise UsageError(f"{flag} {path} and {other_flag} {other} are the same file{_how(path, other)}: one "
                                 "would overwrite the other; name two different files")


def check_output(flag: str, path: str) -> None:
    """UsageError or OSError when ``path`` cannot become a regular file Destiny writes whole:
    a directory, a special file (FIFO, device), a missing or non-directory parent, or an
    existing file that cannot be replaced."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a directory; name a file to write (in it or beside it)")
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or \
            stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
        raise UsageError(f"{flag} {path} is {kind}; Destiny writes an output whole and renames it into place: "
                         "name a regular file")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise create_error(path, FileNotFoundError(2, "No such file or directory", directory))
    problem = replace_problem(path)
    if problem is not None:
        raise UsageError(f"{flag} {path} exists and cannot be replaced: {problem} (checked before starting: nothing "
                         "was done)")


def secondary_rank() -> bool:
    """Whether this process is one of several a launcher started, but not rank 0 (which alone
    writes outputs)."""
    if not any(name in os.environ for name in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")):
        return False
    from destiny.parallel.groups import launch_env

    env = launch_env()
    return env is not None and env.size > 1 and env.rank != 0


@contextlib.contextmanager
def guard(files: CommandFiles, say: Callable[[str], None] = print) -> Iterator[None]:
    """Check the command's files (module docstring), then hold its outputs' locks for the
    block; ``say`` reports the stale temporaries removed."""
    check_distinct(files)
    for flag, path in files.outputs:
        check_output(flag, path)
    with contextlib.ExitStack() as stack:
        if not secondary_rank():
            locked = set()
            for flag, path in files.outputs:
                if _identity(path) in locked:
                    continue  # the same output under one flag twice
                locked.add(_identity(path))
                stack.enter_context(output_lock(path, open_error=lambda exc, p=path: create_error(p, exc)))
                directory, name = os.path.split(os.path.abspath(path))
                for stale in remove_stale_temporaries(directory, lambda target, n=name: target == n):
                    say(f"removed {stale}, a temporary file left by an interrupted destiny process")
        yield


def network_file_bytes(n_parameters: int, slots: int = 0) -> int:
    """About the size of a network file of ``n_parameters`` float32 parameters, with ``slots``
    more arrays of each (an optimizer's state in a checkpoint)."""
    return 4 * n_parameters * (1 + slots) + NETWORK_FILE_OVERHEAD


def check_free_space(path: str | os.PathLike, nbytes: int, what: str) -> None:
    """ResourceError when the disk of ``path`` has less than ``nbytes`` free (``what``: what
    needs them, for the message)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if nbytes > free:
        raise ResourceError(f"cannot write {path}: {what}: about {_size(nbytes)} needed, {_size(free)} free in "
                            f"{directory}; free space there or write to another disk (checked before starting: "
                            "nothing was done)")


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes:,} bytes"
