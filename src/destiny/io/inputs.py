"""Opening an input file: only a regular file, and text without its byte-order mark.

Every reader of a file Destiny is given (datasets, networks, JSON, text, index and history
files) opens it here. A FIFO, a device or a socket is refused before it is opened: opening a
FIFO waits for a writer that may never come, and Destiny's formats are read more than once or
out of order (NetCDF seeks; a text file is read again to name a bad line). No command reads
standard input, so there is no exception to make for it.

A UTF-8 byte-order mark (what Windows editors put first) is not part of the first line's
label: ``open_text_input`` skips it, as Python's 'utf-8-sig' codec does.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from destiny.errors import UsageError

BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_input(path: str | os.PathLike) -> None:
    """UsageError if ``path`` exists and is neither a regular file nor a directory (a FIFO, a
    device, a socket); a missing path is left to ``open`` (FileNotFoundError names it)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise UsageError(f"{os.fspath(path)} is {_kind(mode)}, not a regular file: Destiny reads its inputs from "
                         "files (a pipe would wait for a writer, and the formats are read more than once); write "
                         "the data to a file and give its path")


def open_input(path: str | os.PathLike) -> BinaryIO:
    """``open(path, "rb")`` of a regular file (``check_input`` first)."""
    check_input(path)
    return open(path, "rb")


def open_text_input(path: str | os.PathLike) -> BinaryIO:
    """``open_input``, positioned after a UTF-8 byte-order mark if the file starts with one."""
    stream = open_input(path)
    try:
        if stream.read(len(BOM)) != BOM:
            stream.seek(0)
    except BaseException:
        stream.close()
        raise
    return stream


def binary_kind(head: bytes) -> str | None:
    """What a binary file is by its first bytes (8 are enough): NetCDF (classic or HDF5-based)
    or Parquet; None for anything else."""
    if head[:3] == b"CDF" or head[:8] == b"\x89HDF\r\n\x1a\n":
        return "NetCDF file (a dataset or a trained network)"
    if head[:4] == b"PAR1":
        return "Parquet file"
    return None


def file_kind(path: str | os.PathLike) -> str | None:
    """``binary_kind`` of a regular file's first bytes; None for other files and unreadable paths."""
    try:
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as stream:
            return binary_kind(stream.read(8))
    except (OSError, ValueError):
        return None


def strip_bom(data: bytes) -> bytes:
    """``data`` (a whole file's bytes) without a leading UTF-8 byte-order mark."""
    return data[len(BOM):] if data.startswith(BOM) else data
