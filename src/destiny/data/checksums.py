"""Checksums of the dataset files Destiny writes, so that a flipped bit never trains silently.

The global attribute ``destiny_checksums`` (JSON text, which DSSTNE ignores) holds a CRC-32 of
each variable's values as stored (little-endian, in order) and one of the global attributes
(the dataset names, kinds and sizes). Readers check every variable they read against it, and
the attributes whenever the header is read; a file without the attribute (DSSTNE's, or one
written before Destiny stored it) loads as before. CRC-32 finds every burst of up to 32 flipped
bits and reads at several GB/s, faster than the file comes off the disk.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np

from destiny.errors import DataError
from destiny.io.checksum import attribute_bytes

ATTRIBUTE = "destiny_checksums"
ALGORITHM = "crc32"
_REMAKE = "re-create it with `destiny generate` (or destiny.data.write_netcdf), or copy it again"


def crc32(values: Any, crc: int = 0) -> int:
    """CRC-32 of an array's values as little-endian bytes, continuing ``crc``."""
    array = np.asarray(values)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return zlib.crc32(memoryview(array.reshape(-1)).cast("B"), crc)


def attributes_crc(nc) -> int:
    """CRC-32 of an open file's global attributes (but the checksums), in name order."""
    crc = 0
    for name in sorted(nc.ncattrs()):
        if name != ATTRIBUTE:
            crc = zlib.crc32(b"%s\0%s\0" % (name.encode("utf-8", "surrogatepass"), attribute_bytes(nc.getncattr(name))),
                             crc)
    return crc


class Recorder:
    """The checksums of a file being written: ``add`` each variable's values (in slices, in
    order, if need be), then ``store`` once every attribute is set."""

    def __init__(self):
        self.variables: dict[str, int] = {}

    def add(self, name: str, values: Any) -> None:
        self.variables[name] = crc32(values, self.variables.get(name, 0))

    def store(self, nc) -> None:
        document = {"algorithm": ALGORITHM, "attributes": f"{attributes_crc(nc):08x}",
                    "variables": {name: f"{crc:08x}" for name, crc in sorted(self.variables.items())}}
        nc.setncattr(ATTRIBUTE, json.dumps(document, separators=(",", ":")).encode("ascii"))


def stored(nc, path: str) -> dict | None:
    """The file's checksums ({"attributes": int, "variables": {name: int}}), None if it has none."""
    if ATTRIBUTE not in nc.ncattrs():
        return None
    raw = nc.getncattr(ATTRIBUTE)
    try:
        document = json.loads(raw.decode("ascii") if isinstance(raw, bytes) else raw)
        if document.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {document.get('algorithm')!r}")
        return {"attributes": int(document["attributes"], 16),
                "variables": {str(k): int(v, 16) for k, v in document["variables"].items()}}
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise DataError(f"{path}: its global attribute '{ATTRIBUTE}' is damaged (not the checksums Destiny writes): "
                        f"the file was changed or corrupted after it was written; {_REMAKE}") from None


def _changed(path: str, what: str, actual: int, expected: int, were: str = "was") -> DataError:
    return DataError(f"{path}: {what} {were} changed or corrupted after it was written (CRC-32 {actual:08x}, the file's "
                     f"checksum says {expected:08x}); {_REMAKE}. If you changed it on purpose, delete the checksums: "
                     f"ncatted -a {ATTRIBUTE},global,d,, {path}")


def verify_attributes(nc, path: str, sums: dict | None) -> None:
    """DataError when the global attributes differ from those the checksums were made of."""
    if sums is not None:
        actual = attributes_crc(nc)
        if actual != sums["attributes"]:
            raise _changed(path, "the global attributes (the datasets' names, kinds and sizes)", actual,
                           sums["attributes"], "were")


def verify(path: str, sums: dict | None, name: str, values: Any, what: str = "", crc: int | None = None) -> None:
    """DataError when variable ``name``'s values (or their ``crc``) differ from its checksum;
    ``what``: "dataset 'x' " (whose variable it is), or ""."""
    if sums is None or name not in sums["variables"]:
        return
    actual = crc32(values) if crc is None else crc
    if actual != sums["variables"][name]:
        owner = f" of {what.strip()}" if what.strip() else ""
        raise _changed(path, f"variable '{name}'{owner}", actual, sums["variables"][name])
