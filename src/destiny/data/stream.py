"""Sparse datasets read from their DSSTNE NetCDF file on demand, for data larger than memory.

``StreamingSparseDataset`` keeps only what one example costs — its start and length in the
file (16 bytes), its weight when the dataset is Weighted — and reads the index/value entries of
any set of examples when asked (``read_rows``). Reads are planned: the examples' entry ranges
are sorted, ranges closer than ``GAP`` entries are merged into one segment, a segment holds at
most ``segment_entries`` entries (an eighth of the budget), and each segment is one netCDF4
slice per variable (about 0.1 ms a call; DSSTNE's files store each variable contiguously, so a slice reads exactly its
bytes). Rows come back in the order asked, as a ``SparseDataset`` equal entry for entry to the
same rows of ``read_netcdf``'s dataset: feature indices checked, repeated features merged
(values summed exactly), values in the narrowest exact type.

Memory: everything the dataset holds is recorded in its ``ledger`` (current and peak bytes) —
the per-example arrays, each read's scratch, and what ``destiny.train.streaming`` prefetches —
and a budget (``destiny.data.budget.memory_budget``) caps it. Opening with ``check=True`` reads the file once,
segment by segment, to validate it and learn each example's length after merging repeats, so
batch sizes are known before any epoch.

netCDF-C is not thread-safe: every read here holds ``NETCDF_LOCK``.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings

import numpy as np

from destiny.data import csr
from destiny.data.budget import Ledger, format_bytes, in_memory_bytes, memory_budget
from destiny.data.dataset import INT32_LIMIT, SparseDataset, exact_values, index_dtype
from destiny.data.layout import Attribute, Names
from destiny.errors import DataError, DataWarning

GAP = 1 << 16  # entries: ranges closer than this are read as one slice (copying 256 KB ≈ a call's cost)
SEGMENT_ENTRIES = 1 << 20  # the most entries one slice reads, unless the budget is smaller
MIN_SEGMENT = 1 << 8

# netCDF-C (and HDF5 under it) must not be entered from two threads at once; the prefetch
# threads of several streaming datasets share this lock.
NETCDF_LOCK = threading.RLock()

class StreamingSparseDataset:
    """A sparse dataset of a DSSTNE NetCDF file whose entries stay on disk (module docstring).

    Has what a ``SparseDataset`` has for binding to a network — ``name``, ``dims``,
    ``n_examples``, ``n_features``, ``nnz``, ``ignore_zero``, ``is_indicator`` — plus
    ``lengths`` (the examples' entry counts), ``weights``, ``budget`` and ``ledger``.
    ``read_rows(examples)`` gives the rows of any examples as a ``SparseDataset``;
    ``to_memory()`` reads it whole. Close it (or use ``with``) to release the file.
    """

    def __init__(self, path: str | os.PathLike, name: str | None = None, *, budget: str | int | None = None,
                 check: bool = True):
        from destiny.data.netcdf import _headers, _open, _select

        self.path = os.fspath(path)
        self.budget = memory_budget(budget)
        self.ledger = Ledger(self.budget)
        self._stack = contextlib.ExitStack()
        with NETCDF_LOCK:
            self._file = self._stack.enter_context(_open(self.path))
            infos = _headers(self._file)
            if name is None:
                sparse = [info for info in infos if info.sparse]
                if len(sparse) != 1:
                    self.close()
                    raise DataError(f"{self.path}: holds {len(sparse)} sparse datasets "
                                    f"({', '.join(repr(i.name) for i in infos)}); name the one to stream")
                info = sparse[0]
            else:
                info = _select(self._file, infos, name)
        if not info.sparse:
            self.close()
            raise DataError(f"{self.path}: dataset '{info.name}' is dense; only sparse datasets stream "
                            "(read it with destiny.data.read_dataset)")
        self.info = info
        self.name, self.dims = info.name, tuple(info.dims)
        self.ignore_zero = bool(info.attributes & Attribute.SPARSE_IGNORE_ZERO)
        self._names = Names(info.index)
        self._index_var = self._variable(self._names.sparseIndex)
        self._value_var = None if info.attributes & Attribute.BOOLEAN else self._variable(self._names.sparseData)
        try:
            with self.ledger.holding(32 * max(info.n_examples, info.n_unique)):  # the raw offsets, converted
                self._read_offsets()
            for var in (self._index_var, self._value_var) if check else ():  # the checksums (files Destiny wrote)
                if var is not None:
                    with NETCDF_LOCK, self.ledger.holding(self.scratch_bytes):
                        self._file.verify(var.name, f"dataset '{info.name}' ", self.segment_entries)
        except BaseException:
            self.close()
            raise
        self.has_duplicates = False
        self._scanned = False
        self.value_dtype: np.dtype | None = None  # of read values: learnt by the scan
        if check:
            self._scan()

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_examples(self) -> int:
        return len(self.starts)

    @property
    def n_features(self) -> int:
        return math.prod(self.dims)

    @property
    def width(self) -> int:
        return self.dims[0]

    @property
    def nnz(self) -> int:
        """Entries after merging repeated features (as read_netcdf counts them)."""
        return int(self.lengths.sum())

    @property
    def is_indicator(self) -> bool:
        return self._value_var is None

    @property
    def entry_bytes(self) -> int:
        """Bytes one entry takes in a read batch (index + value in their read types)."""
        value = 0 if self._value_var is None else (8 if self.has_duplicates else self._value_var.dtype.itemsize)
        return index_dtype(self.n_features).itemsize + value

    @property
    def in_memory_bytes(self) -> int:
        """What the whole dataset would take in memory (``read_netcdf``)."""
        return in_memory_bytes(self.info)

    @property
    def fixed_bytes(self) -> int:
        """Bytes held for as long as the dataset is open: the per-example arrays."""
        return sum(a.nbytes for a in (self.starts, self.ends, self.lengths, self.weights) if a is not None)

    @property
    def _scratch_per_entry(self) -> int:
        """Bytes an entry of a slice takes while read: netCDF4 holds two copies of a slice at
        its peak, then the source and destination positions of the copy into the result (two
        int64 arrays and their temporaries)."""
        raw = self._index_var.dtype.itemsize + (0 if self._value_var is None else self._value_var.dtype.itemsize)
        return 2 * raw + 40

    @property
    def segment_entries(self) -> int:
        """The most entries one slice reads: SEGMENT_ENTRIES, or less under a small budget."""
        return int(max(MIN_SEGMENT, min(SEGMENT_ENTRIES, self.budget // 8 // self._scratch_per_entry)))

    @property
    def scratch_bytes(self) -> int:
        """The most one read holds beside its result (one segment and its positions)."""
        return self.segment_entries * self._scratch_per_entry

    def __len__(self) -> int:
        return self.n_examples

    def __repr__(self) -> str:
        kind = "indicator" if self.is_indicator else f"analog {self._value_var.dtype}"
        return (f"StreamingSparseDataset({self.path!r}, {self.name!r}, dims={self.dims}, "
                f"examples={self.n_examples:,}, {kind}, budget {format_bytes(self.budget)})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        with NETCDF_LOCK:
            self._stack.close()

    # -- opening -----------------------------------------------------------------------------
    def _variable(self, name: str):
        var = self._file.nc.variables.get(name)
        if var is None:
            self.close()
            raise DataError(f"{self.path}: dataset '{self.info.name}' has no variable '{name}'; regenerate it "
                            "with `destiny generate` or destiny.data.write_netcdf")
        if var.ndim != 1 or np.dtype(var.dtype).kind not in "iuf":
            self.close()
            raise DataError(f"{self.path}: variable '{name}' has shape {var.shape} and type {var.dtype}; "
                            "expected one dimension of numbers")
        return var

    def _read_offsets(self) -> None:
        info, names, f = self.info, self._names, self._file
        what = f"dataset '{info.name}' "
        with NETCDF_LOCK:
            starts = f.read(names.sparseStart, info.n_unique, what).astype(np.int64)
            ends = f.read(names.sparseEnd, info.n_unique, what).astype(np.int64)
            rows = None
            if info.attributes & Attribute.INDEXED:
                rows = f.read(names.index, info.n_examples, what).astype(np.int64)
            weights = None
            if info.attributes & Attribute.WEIGHTED:
                weights = f.read(names.dataWeight, None, what).astype(np.float32)
        nnz = int(self._index_var.shape[0])
        bad = np.flatnonzero((starts < 0) | (ends < starts) | (ends > nnz))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"{self.path}: {what}row {i} spans entries {starts[i]}..{ends[i]}, outside 0..{nnz} "
                            f"({names.sparseStart}/{names.sparseEnd} are inconsistent); regenerate the file")
        if self._value_var is not None and self._value_var.shape[0] != nnz:
            raise DataError(f"{self.path}: {what}has {self._value_var.shape[0]} values for {nnz} indices")
        if rows is not None:
            if rows.size and (rows.min() < 0 or rows.max() >= info.n_unique):
                raise DataError(f"{self.path}: {what}variable '{names.index}' points outside its "
                                f"{info.n_unique} stored rows")
            if weights is not None and len(weights) == info.n_unique != info.n_examples:
                weights = weights[rows]
            starts, ends = starts[rows], ends[rows]
        if weights is not None:
            if len(weights) != info.n_examples:
                raise DataError(f"{self.path}: {what}has {len(weights)} weights for {info.n_examples} examples")
            if not np.isfinite(weights).all():
                raise DataError(f"{self.path}: {what}example {int(np.argmin(np.isfinite(weights)))} has a weight "
                                "that is not finite")
        self.starts, self.weights = starts, weights
        self.lengths = ends - starts  # (examples,) int64, after merging repeats once scanned
        self.ends = None  # kept apart from starts + lengths only when merging shortens rows
        self.ledger.take(self.fixed_bytes)

    def _scan(self) -> None:
        """Read every entry once, in file order: check indices and values, and learn the
        examples' lengths after merging repeated features."""
        with self.ledger.holding(32 * self.n_examples):  # order, merged lengths, cumulative lengths
            self._scan_rows()

    def _scan_rows(self) -> None:
        order = np.argsort(self.starts, kind="stable")
        kinds = _ValueKinds()
        merged = self.lengths.copy()
        removed = 0
        reach = np.cumsum(self.lengths[order])
        bounds = np.searchsorted(reach, np.arange(0, int(reach[-1]) if reach.size else 0, self.segment_entries),
                                 side="right")
        bounds = np.unique(np.concatenate([[0], bounds, [self.n_examples]])).tolist()
        for first, stop in zip(bounds[:-1], bounds[1:]):
            examples = order[first:stop]
            rows = self._read(examples, merge=True, kinds=kinds)
            with self.ledger.holding(rows.nbytes):
                removed += int(self.lengths[examples].sum()) - rows.nnz
                merged[examples] = np.diff(rows.offsets)
            del rows
        if removed:
            self.ledger.give(self.fixed_bytes)
            self.ends = self.starts + self.lengths
            self.lengths = merged
            self.has_duplicates = True
            self.ledger.take(self.fixed_bytes)
            warnings.warn(f"{self.path}: dataset '{self.name}': merged {removed:,} repeated features within "
                          f"examples ({'values summed' if not self.is_indicator else 'one entry kept'})",
                          DataWarning, stacklevel=3)
        self._scanned = True
        self.value_dtype = None if self.is_indicator else kinds.dtype()

    @property
    def read_entry_bytes(self) -> int:
        """Bytes an entry takes while being read: the raw slices' types, plus the converted
        copies (merging repeats, narrowing types) where there are any."""
        raw = self._index_var.dtype.itemsize + (0 if self._value_var is None else self._value_var.dtype.itemsize)
        if self.has_duplicates or not self._scanned:
            return raw + self.entry_bytes
        if np.dtype(self._index_var.dtype) not in (np.dtype(np.uint32), np.dtype(np.int32)):
            raw += index_dtype(self.n_features).itemsize
        if self._value_var is not None and np.dtype(self._value_var.dtype) not in (np.dtype(np.float32),
                                                                                  np.dtype(np.int32)):
            raw += 8
        return raw

    def read_bytes(self, nnz: int, n: int) -> int:
        """The most a read of n examples with nnz entries holds, its result included (entries,
        and per example: offsets, starts, ends, lengths, sort order, weights)."""
        return nnz * self.read_entry_bytes + 80 * (n + 1) + (0 if self.weights is None else 4 * n)

    # -- reading -----------------------------------------------------------------------------
    def read_rows(self, examples) -> SparseDataset:
        """The rows of ``examples`` (int array, any order, repeats allowed) as a SparseDataset."""
        examples = np.asarray(examples, dtype=np.int64)
        if examples.size and (examples.min() < 0 or examples.max() >= self.n_examples):
            raise IndexError(f"examples must lie in [0, {self.n_examples}); got {examples.min()}..{examples.max()}")
        rows = self._read(examples, merge=self.has_duplicates or not self._scanned)
        if not np.array_equal(np.diff(rows.offsets), self.lengths[examples]):
            raise DataError(f"{self.path}: dataset '{self.name}' lists a feature twice in an example; open it "
                            "with check=True (the default), which merges repeats as read_netcdf does")
        return rows

    def to_memory(self) -> SparseDataset:
        """The whole dataset in memory (what read_netcdf returns)."""
        return self.read_rows(np.arange(self.n_examples))

    def _read(self, examples: np.ndarray, merge: bool, kinds: "_ValueKinds | None" = None) -> SparseDataset:
        """The examples' rows, read segment by segment; repeats merged when ``merge``."""
        raw_starts = self.starts[examples]
        raw_ends = raw_starts + (self.lengths[examples] if self.ends is None else self.ends[examples] - raw_starts)
        offsets = csr.counts_to_offsets(raw_ends - raw_starts)
        nnz = int(offsets[-1])
        indices = np.empty(nnz, dtype=self._index_var.dtype)
        values = None if self._value_var is None else np.empty(nnz, dtype=self._value_var.dtype)
        order = np.argsort(raw_starts, kind="stable")
        st, en = raw_starts[order], raw_ends[order]
        with self.ledger.holding(self.scratch_bytes + self.read_bytes(nnz, len(examples))):
            for a, b, lo, hi in _segments(st, en, GAP, self.segment_entries):
                with NETCDF_LOCK:
                    seg_index = self._slice(self._index_var, lo, hi)
                    seg_value = None if values is None else self._slice(self._value_var, lo, hi)
                _, src = csr.gather_rows(st[a:b] - lo, en[a:b] - lo)
                dst_starts = offsets[order[a:b]]
                _, dst = csr.gather_rows(dst_starts, dst_starts + (en[a:b] - st[a:b]))
                indices[dst] = seg_index[src]
                if values is not None:
                    values[dst] = seg_value[src]
                del seg_index, seg_value, src, dst
            return self._dataset(examples, offsets, indices, values, merge, kinds)

    def _slice(self, var, lo: int, hi: int) -> np.ndarray:
        try:
            return np.asarray(var[lo:hi])
        except (OSError, RuntimeError, IndexError, ValueError) as exc:
            raise DataError(f"{self.path}: cannot read entries {lo}..{hi} of '{var.name}' ({exc}): the file is "
                            "damaged or truncated; regenerate it") from None

    def _dataset(self, examples, offsets, raw, values, merge: bool, kinds=None) -> SparseDataset:
        n = self.n_features
        if raw.size and ((raw.dtype.kind == "i" and raw.min() < 0) or raw.max() >= n):
            at = int(np.argmax(raw >= n)) if raw.max() >= n else int(np.argmin(raw))
            example = int(examples[csr.row_of(offsets, at)])
            raise DataError(f"{self.path}: dataset '{self.name}': example {example} has feature index {raw[at]}, "
                            f"outside 0..{n - 1} (width×height×length = {' × '.join(map(str, self.dims))}); "
                            "the file is inconsistent, regenerate it")
        if n < INT32_LIMIT:
            indices = raw.view(np.int32) if raw.dtype in (np.uint32, np.int32) else raw.astype(np.int32)
        else:
            indices = raw.astype(np.int64)
        if values is not None:
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                at = int(np.argmin(np.isfinite(values)))
                raise DataError(f"{self.path}: dataset '{self.name}': example "
                                f"{int(examples[csr.row_of(offsets, at)])} has value {values[at]} for feature "
                                f"{indices[at]}; values must be finite")
        if merge:
            offsets, indices, values, _ = csr.merge_duplicates(offsets, indices, values, n)
        if values is not None:
            if kinds is not None:
                kinds.add(values)
            if self.value_dtype is not None:  # the type read_netcdf picks for the whole dataset
                values = values.astype(self.value_dtype, copy=False)
            else:
                values = exact_values(values)
        weights = None if self.weights is None else self.weights[examples]
        return SparseDataset(self.name, self.dims, offsets, indices, values, weights, self.ignore_zero)


class _ValueKinds:
    """What ``exact_values`` would pick for all the values of a dataset, learnt segment by
    segment (the narrowest of float32, int32, int64, float64 that holds every value exactly)."""

    def __init__(self):
        self.kind = None  # "f4": float32 as stored; "i": integers; "f": other floats
        self.f32_exact, self.integral = True, True
        self.low, self.high, self.size = 0, 0, 0

    def add(self, values: np.ndarray) -> None:
        kind = "f4" if values.dtype == np.float32 else "i" if values.dtype.kind in "biu" else "f"
        self.kind = kind if self.kind in (None, kind) else "f"
        if values.size == 0:
            return
        if kind == "f":
            self.f32_exact &= bool(np.array_equal(values.astype(np.float32), values))
        if kind != "i":  # float32 as stored counts too: merged with float64 sums it may become integers
            self.integral &= bool(np.all(np.isfinite(values)) and np.array_equal(np.floor(values), values))
        low, high = values.min(), values.max()
        self.low, self.high = (low, high) if not self.size else (min(self.low, low), max(self.high, high))
        self.size += values.size

    def dtype(self) -> np.dtype:
        if self.kind in (None, "f4") or self.size == 0:
            return np.dtype(np.float32)
        low, high = int(self.low) if self.integral else self.low, int(self.high) if self.integral else self.high
        if self.kind == "i":
            if max(abs(low), abs(high)) <= (1 << 24):
                return np.dtype(np.float32)
            if -INT32_LIMIT <= low and high < INT32_LIMIT:
                return np.dtype(np.int32)
            return np.dtype(np.int64) if high < (1 << 63) else np.dtype(np.float64)
        if self.f32_exact:
            return np.dtype(np.float32)
        if self.integral:
            if -INT32_LIMIT <= low and high < INT32_LIMIT:
                return np.dtype(np.int32)
            if -(1 << 63) <= low and high < (1 << 63):
                return np.dtype(np.int64)
        return np.dtype(np.float64)


def _segments(starts: np.ndarray, ends: np.ndarray, gap: int, most: int):
    """Cut ranges sorted by start into slices to read: yield (first, stop, lo, hi) — ranges
    [first, stop) lie in entries [lo, hi). A new slice starts past a gap of more than ``gap``
    entries or where the slice would pass ``most`` entries (a longer range goes alone)."""
    n = len(starts)
    if n == 0:
        return
    reach = np.maximum.accumulate(ends)
    breaks = np.flatnonzero(starts[1:] > reach[:-1] + gap) + 1
    bounds = np.concatenate([[0], breaks, [n]]).tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        i = a
        while i < b:
            lo = int(starts[i])
            j = i + int(np.searchsorted(reach[i:b], lo + most, side="right"))
            j = min(b, max(j, i + 1))
            yield i, j, lo, int(ends[i:j].max())
            i = j


def open_files(paths, budget: int, *, check: bool = True) -> dict:
    """Every dataset of the files by name: sparse ones streaming (sharing ``budget`` bytes in
    proportion to their sizes), dense ones read whole. A file named twice is opened once; a
    name in two files must be the same data."""
    from destiny.data.netcdf import inspect_netcdf, read_dataset

    chosen: dict[str, tuple[str, object]] = {}
    for path in paths:
        for info in inspect_netcdf(path):
            if info.name in chosen:
                other, known = chosen[info.name]
                if os.path.abspath(other) != os.path.abspath(path) and known.n_examples != info.n_examples:
                    raise DataError(f"dataset '{info.name}' is in both {other} and {path} with different contents; "
                                    "give each dataset one name")
                continue
            chosen[info.name] = (os.fspath(path), info)
    sizes = {name: max(1, in_memory_bytes(info)) for name, (_, info) in chosen.items() if info.sparse}
    total = sum(sizes.values()) or 1
    out = {}
    try:
        for name, (path, info) in chosen.items():
            if info.sparse:
                out[name] = StreamingSparseDataset(path, name, budget=max(1, budget * sizes[name] // total),
                                                   check=check)
            else:
                out[name] = read_dataset(path, name)
    except BaseException:
        for dataset in out.values():
            if isinstance(dataset, StreamingSparseDataset):
                dataset.close()
        raise
    return out
