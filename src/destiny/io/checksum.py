"""A checksum of a NetCDF file's content, independent of how the file is laid out on disk:
the attributes and variables (names, types, shapes, little-endian values) in name order."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

_HASH_SLICE = 1 << 20  # values hashed at a time


def content_checksum(ds, skip: str) -> str:
    """``sha256:<hex>`` of an open NetCDF file's content: every global attribute but the
    ``skip`` attribute (the checksum itself) and every variable (name, type, shape, values), in name order. Reads the
    variables in slices of about a million values."""
    ds.set_auto_mask(False)
    h = hashlib.sha256()
    for name in sorted(ds.ncattrs()):
        if name != skip:
            h.update(b"A%s\0%s" % (name.encode(), attribute_bytes(ds.getncattr(name))))
    for name in sorted(ds.variables):
        var = ds.variables[name]
        shape = tuple(int(n) for n in var.shape)
        h.update(b"V%s\0%s%s" % (name.encode(), str(np.dtype(var.dtype)).encode(), str(shape).encode()))
        if not shape:
            h.update(_little_endian(var[...]))
            continue
        if math.prod(shape) == 0:
            continue
        rows = max(1, _HASH_SLICE // max(1, math.prod(shape[1:])))
        for lo in range(0, shape[0], rows):
            h.update(_little_endian(var[lo:lo + rows]))
    return "sha256:" + h.hexdigest()


def attribute_bytes(value: Any) -> bytes:
    """An attribute's value as typed bytes (text, raw bytes, or little-endian numbers)."""
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return b"b" + value
    array = np.asarray(value)
    if array.dtype.kind in "USO":
        return b"t" + "\0".join(map(str, array.ravel().tolist())).encode("utf-8", "surrogatepass")
    return _little_endian(array)


def _little_endian(values: Any) -> bytes:
    array = np.asarray(values)
    return array.dtype.newbyteorder("<").str.encode() + np.ascontiguousarray(
        array, dtype=array.dtype.newbyteorder("<")).tobytes()
