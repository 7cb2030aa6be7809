"""Limits on what an untrusted file may make Destiny allocate, checked before allocating.

A hostile or damaged file must end in a precise error, never in exhausted memory: a JSON
document is read only up to ``MAX_JSON_BYTES`` and ``MAX_JSON_DEPTH`` levels of nesting; a
NetCDF variable may declare no more values than its file can hold (``variable_fits``: an
unwritten variable of 10^12 values in a 1 KB file reads as fill values); anything a file's
counts expand to (dense one-hot rows, repeated Indexed rows) must fit in this machine's memory
(``allocation_error``). Nothing here is ever unpickled.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

MAX_JSON_BYTES = 4 << 20  # a network description or history: kilobytes in practice
MAX_JSON_DEPTH = 64  # DSSTNE's descriptions nest 4 levels deep
# zlib (NetCDF-4's deflate) compresses at most about 1032:1; a variable that claims more
# values than that per byte of its file cannot be real data.
MAX_COMPRESSION = 1100
SMALL_VARIABLE = 1 << 20  # bytes a variable may claim whatever its file's size


def json_too_big(nbytes: int) -> str | None:
    """Why a JSON document of ``nbytes`` is refused, or None."""
    if nbytes > MAX_JSON_BYTES:
        return (f"is {nbytes:,} bytes; a JSON document Destiny reads is at most {MAX_JSON_BYTES:,} bytes "
                "(a network description is a few kilobytes)")
    return None


def json_too_deep(document: Any, children: Callable[[Any], Iterable] | None = None) -> str | None:
    """Why a parsed JSON document is refused for its nesting, or None. ``children``: the
    values inside a node (default: a list's items, a dict's values). The parser itself stops
    at Python's recursion limit (about 1000 levels); this walk is iterative."""
    children = children or _children
    level = [document]
    for depth in range(MAX_JSON_DEPTH + 1):
        level = [child for node in level for child in children(node)]
        if not level:
            return None
    return f"nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"


def _children(node: Any) -> Iterable:
    if isinstance(node, dict):
        return node.values()
    return node if isinstance(node, list) else ()


def variable_fits(n_values: int, itemsize: int, file_size: int, compressed: bool) -> bool:
    """Whether a variable of ``n_values`` × ``itemsize`` bytes can be stored in a file of
    ``file_size`` bytes (``compressed``: by at most MAX_COMPRESSION to 1)."""
    nbytes = n_values * itemsize
    return nbytes <= SMALL_VARIABLE or nbytes <= file_size * (MAX_COMPRESSION if compressed else 1)


def variable_too_big(var, file_size: int) -> str | None:
    """Why an open netCDF4 variable is refused before reading it (it declares more values
    than its file can hold), or None."""
    import math

    n_values = math.prod(int(n) for n in var.shape)
    try:
        filters = var.filters() or {}
    except (AttributeError, RuntimeError, OSError):
        filters = {}
    compressed = any(filters.get(name) for name in ("zlib", "szip", "zstd", "bzip2", "blosc"))
    itemsize = getattr(getattr(var, "dtype", None), "itemsize", 1) or 1
    if variable_fits(n_values, itemsize, file_size, compressed):
        return None
    return (f"variable '{var.name}' declares {n_values:,} values ({n_values * itemsize / 2**20:,.1f} MiB), more than "
            f"its file of {file_size:,} bytes can hold{' compressed' if compressed else ''}: the file is damaged "
            "or forged")


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where it cannot be told)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def allocation_error(nbytes: int, what: str) -> str | None:
    """Why allocating ``nbytes`` for ``what`` is refused (more than the machine's memory), or None."""
    total = memory_bytes()
    if total is not None and nbytes > total:
        return (f"{what} would take {nbytes / 2**30:,.1f} GiB, more than this machine's "
                f"{total / 2**30:,.1f} GiB of memory")
    return None
