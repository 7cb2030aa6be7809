"""Vectorised helpers on CSR arrays, shared by the dataset classes, readers and converters.

CSR here means ``offsets`` (n_rows + 1,) int64 with ``offsets[0] == 0`` and per-entry arrays
(nnz,) in row order. Nothing loops over rows in Python; work on nnz-sized temporaries is done in
chunks of about 262K entries so that a 20M-entry dataset never needs a second 20M-entry
int64 array (160 MB) beside its own.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 18  # entries a chunk: 2 MB of int64 keys


def counts_to_offsets(counts: np.ndarray) -> np.ndarray:
    """(n,) entries a row → (n + 1,) int64 offsets."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def gather_rows(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stack the entry ranges [starts[i], ends[i]) of a source array, row after row.

    Returns the (n + 1,) int64 offsets of the stacked rows and the (nnz,) int64 positions of
    their entries in the source, so ``source[positions]`` is the stacked entry array.
    """
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(ends, dtype=np.int64) - starts
    offsets = counts_to_offsets(counts)
    positions = np.arange(offsets[-1], dtype=np.int64)
    positions += np.repeat(starts - offsets[:-1], counts)
    return offsets, positions


def take_rows(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and source positions of rows ``rows`` (any order, repeats allowed)."""
    rows = np.asarray(rows, dtype=np.int64)
    return gather_rows(offsets[rows], offsets[rows + 1])


def row_of(offsets: np.ndarray, positions: np.ndarray | int) -> np.ndarray | int:
    """The row holding each entry position."""
    return np.searchsorted(offsets, positions, side="right") - 1


def chunks(offsets: np.ndarray):
    """Yield (first_row, stop_row) ranges of about CHUNK entries each (a longer row alone)."""
    n_rows = len(offsets) - 1
    nnz = int(offsets[-1])
    bounds = np.searchsorted(offsets, np.arange(0, nnz, CHUNK, dtype=np.int64), side="right") - 1
    bounds = np.unique(np.concatenate([bounds, [n_rows]]))
    for first, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if stop > first:
            yield first, stop


def _keys(offsets: np.ndarray, indices: np.ndarray, first: int, stop: int, n_features: int):
    """(entries,) int64 keys row·n_features + index for rows [first, stop), local rows."""
    lo, hi = int(offsets[first]), int(offsets[stop])
    local_rows = np.repeat(np.arange(stop - first, dtype=np.int64), np.diff(offsets[first:stop + 1]))
    keys = local_rows * n_features
    keys += indices[lo:hi]
    return lo, keys


def duplicate_positions(offsets: np.ndarray, indices: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Entries that repeat an index already listed earlier in the same row.

    Returns (repeats, firsts): int64 positions of every repeated entry and, for each, the
    position of the first entry of its row with the same index. Both are empty when the rows
    are duplicate-free, which a sort of each chunk's keys decides (about 10 ns an entry).
    """
    repeats, firsts = [], []
    if n_features >= 1 << 40:  # row·n_features could overflow int64 keys: sort pairs instead
        return _duplicates_by_lexsort(offsets, indices)
    for first, stop in chunks(offsets):
        lo, keys = _keys(offsets, indices, first, stop, n_features)
        ordered = np.sort(keys)
        if not np.any(ordered[1:] == ordered[:-1]):
            continue
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        repeated = np.zeros(len(keys), dtype=bool)
        repeated[1:] = ordered[1:] == ordered[:-1]
        group_start = np.maximum.accumulate(np.where(repeated, 0, np.arange(len(keys))))
        repeats.append(order[repeated] + lo)
        firsts.append(order[group_start[repeated]] + lo)
    if not repeats:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(repeats), np.concatenate(firsts)


def _duplicates_by_lexsort(offsets: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    order = np.lexsort((indices, rows))  # stable: equal pairs keep entry order
    same = (rows[order][1:] == rows[order][:-1]) & (indices[order][1:] == indices[order][:-1])
    repeated = np.concatenate([[False], same])
    group_start = np.maximum.accumulate(np.where(repeated, 0, np.arange(len(order))))
    return order[repeated], order[group_start[repeated]]


def merge_duplicates(offsets: np.ndarray, indices: np.ndarray, values: np.ndarray | None,
                     n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Drop repeated indices within each row, keeping the first entry's place.

    Values of the repeats are added to the kept entry (what a gather-sum over the row computes),
    in float64 or int64 so that the sum is exact; the caller narrows the type again.
    Returns (offsets, indices, values, number of entries removed); the inputs come back
    unchanged, not copied, when there is nothing to merge.
    """
    repeats, firsts = duplicate_positions(offsets, indices, n_features)
    if len(repeats) == 0:
        return offsets, indices, values, 0
    keep = np.ones(len(indices), dtype=bool)
    keep[repeats] = False
    if values is not None:
        values = values.astype(np.float64 if values.dtype.kind == "f" else np.int64)
        np.add.at(values, firsts, values[repeats])  # in entry order: deterministic sums
        values = values[keep]
    removed_per_row = np.bincount(row_of(offsets, repeats), minlength=len(offsets) - 1)
    new_offsets = offsets - np.concatenate([[0], np.cumsum(removed_per_row)])
    return new_offsets, indices[keep], values, len(repeats)
