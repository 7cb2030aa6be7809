"""DSSTNE index files (reference/dsstne.md §5.2): one ``label<TAB>index`` a line.

Read strictly: a line without exactly one TAB, an empty label, an index that is not a
non-negative integer, a label listed twice or an index given to two labels is a DataError with
file and line (DSSTNE fails on the first three without saying where, and lets the last one
silently merge two labels). Blank lines are skipped. Written sorted by index (DSSTNE wrote hash
order), atomically. Labels are bytes-exact: UTF-8, undecodable bytes kept as surrogates, but
without the spaces around them (as the text parser reads them, with a DataWarning) and without
a UTF-8 byte-order mark before the first.
"""

from __future__ import annotations

import operator
import os
import warnings
from typing import Iterable, Mapping

import numpy as np

from destiny.errors import DataError, DataWarning
from destiny.io.atomic import Staged, atomic_open
from destiny.io.inputs import open_text_input

ENCODING = ("utf-8", "surrogateescape")
_SPACES = b" \x0b\x0c"  # around a label or an index: not part of it (a TAB is the separator)


def show_label(token: bytes, limit: int = 40) -> str:
    """A label or datapoint for an error message."""
    text = token.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"


def read_index_raw(path: str | os.PathLike) -> dict[bytes, int]:
    """``read_index`` with the labels left as bytes, as the text parser looks them up."""
    path = os.fspath(path)
    with open_text_input(path) as stream:
        data = stream.read()
    index: dict[bytes, int] = {}
    lines = data.split(b"\n")
    trimmed = None  # (line, label) of the first label read without its spaces
    for lineno, line in enumerate(lines, 1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue
        label, tab, number = line.partition(b"\t")
        if label != label.strip(_SPACES) or number != number.strip(_SPACES):
            trimmed = trimmed or (lineno, label if label != label.strip(_SPACES) else number)
            label, number = label.strip(_SPACES), number.strip(_SPACES)
        where = f"{path}:{lineno}"
        if not tab:
            raise DataError(f"{where}: no TAB; each line of an index file is 'label<TAB>index'")
        if b"\t" in number:
            raise DataError(f"{where}: more than one TAB; each line of an index file is 'label<TAB>index'")
        if not label:
            raise DataError(f"{where}: empty label before the TAB")
        if not number.isdigit() or len(number) > 18:
            raise DataError(f"{where}: index '{show_label(number)}' of '{show_label(label)}' is not a non-negative integer"
                            + (" below 10^18" if number.isdigit() else ""))
        if label in index:
            first = next(i for i, other in enumerate(lines, 1) if other.partition(b"\t")[0].strip(_SPACES) == label)
            raise DataError(f"{where}: label '{show_label(label)}' is listed again (first on line {first}); "
                            "each label must appear once")
        index[label] = int(number)
    if trimmed:
        shown = show_label(trimmed[1].strip(_SPACES))
        warnings.warn(f"{path}:{trimmed[0]}: read '{show_label(trimmed[1])}' as '{shown}': spaces around a label or "
                      "an index are not part of it", DataWarning, stacklevel=2)
    _check_distinct(index, lines, path)
    return index


def _check_distinct(index: dict[bytes, int], lines: list[bytes], path: str) -> None:
    """Two labels with one index would share a row or column: reject, naming both lines."""
    if not index:
        return
    numbers = np.sort(np.fromiter(index.values(), dtype=np.int64, count=len(index)))
    if not np.any(numbers[1:] == numbers[:-1]):
        return
    owner: dict[int, int] = {}
    for lineno, line in enumerate(lines, 1):
        label, tab, number = line.rstrip(b"\r").partition(b"\t")
        label = label.strip(_SPACES)
        if not tab:
            continue
        if int(number) in owner and owner[int(number)] != lineno:
            raise DataError(f"{path}:{lineno}: index {int(number)} of '{show_label(label)}' is already given on line "
                            f"{owner[int(number)]}; each index must belong to one label")
        owner[int(number)] = lineno


def read_index(path: str | os.PathLike) -> dict[str, int]:
    """An index file (``label<TAB>index`` lines) as {label: index}.

    DataError with file:line for a line without exactly one TAB, an empty label, an index that
    is not a non-negative integer, a label listed twice or an index given to two labels.
    """
    return {label.decode(*ENCODING): i for label, i in read_index_raw(path).items()}


def write_index(path: str | os.PathLike, index: Mapping[str, int] | Mapping[bytes, int], *,
                stage: Staged | None = None) -> None:
    """Write ``label<TAB>index`` lines sorted by index (DSSTNE wrote hash order), atomically
    (``stage``: as one file of a set, ``io.atomic.staged``)."""
    lines = []
    for label, i in sorted(index.items(), key=operator.itemgetter(1)):
        raw = label if isinstance(label, bytes) else label.encode(*ENCODING)
        if not raw or any(c in raw for c in b"\t\n\r"):
            raise DataError(f"{path}: label {label!r} cannot be written to an index file: it is empty or holds "
                            "a TAB or line break")
        lines.append(b"%s\t%d\n" % (raw, i))
    with atomic_open(path, "wb", stage=stage) as stream:
        stream.write(b"".join(lines))


def write_index_pairs(path: str | os.PathLike, pairs: Iterable[tuple[object, int]], what: str, *,
                      stage: Staged | None = None) -> int:
    """Stream ``label<TAB>index`` lines (pairs in index order, labels written as ``str``) to
    ``path``, atomically (``stage``: as one file of a set), without holding the whole file;
    returns the number of labels."""
    count = 0
    with atomic_open(path, "wb", stage=stage) as stream:
        lines = []
        for label, i in pairs:
            raw = str(label).encode(*ENCODING)
            if not raw or any(c in raw for c in b"\t\n\r"):
                raise DataError(f"{what} label {show_label(raw)!r} cannot be written to an index file: it is empty "
                                "or holds a TAB or line break; clean the column first")
            lines.append(b"%s\t%d\n" % (raw, i))
            count += 1
            if len(lines) >= 65536:
                stream.write(b"".join(lines))
                lines.clear()
        stream.write(b"".join(lines))
    return count


def labels_by_index(index: Mapping[str, int]) -> list[str | None]:
    """The inverse of an index: position i holds the label of index i (None where no label)."""
    labels: list[str | None] = [None] * (max(index.values()) + 1 if index else 0)
    for label, i in index.items():
        labels[i] = label
    return labels
