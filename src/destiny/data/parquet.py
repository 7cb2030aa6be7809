"""A Parquet table of (user, item[, value]) rows → a DSSTNE NetCDF dataset and index files,
holding at most about a memory budget of rows at once (data larger than memory).

The same dataset as ``destiny.spark.build_datasets`` (one shard) and ``from_pandas`` with the
labels numbered in sorted order: users (rows) and items (columns) are the distinct labels sorted
and numbered from 0, each row's entries are sorted by (item, value), repeated (user, item) pairs
are merged (indicator: one entry; values: summed) with a DataWarning, and values are kept
exactly in the narrowest type (``exact_values``) chosen over the whole column.

Passes over the file, batch by batch (``ParquetFile.iter_batches``):

1. every column: checks (no nulls, finite values), the distinct users with their row counts,
   the distinct items, and what decides the value type;
2. one pass per range of consecutive users whose rows fit the budget: those users' rows are
   numbered, sorted, merged and appended to raw files in a temporary directory beside the output.

Then the NetCDF file is written from the raw files slice by slice, laid out as ``write_netcdf``
lays it out (the same bytes); it and the index files are committed as a set (all or none,
``io.atomic.staged``). The sorted labels and per-user counts are held whole (about 8 bytes a
user plus the labels), as the index files need them.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

from destiny.data import csr
from destiny.data.checksums import Recorder
from destiny.data.dataset import exact_values
from destiny.data.index import write_index_pairs
from destiny.data.layout import Attribute, DataType, Kind, Names
from destiny.data.netcdf_write import _header_attrs, _offset_dtype, _stored_values
from destiny.errors import DataError, DataWarning, ResourceError, UsageError
from destiny.io.atomic import Staged, atomic_path, staged

ROW_BYTES = 48          # what one row costs in a range: ids, sort order, gathered copies
VALUE_BYTES = 24        # and its value, as read, sorted and summed
SLICE_ENTRIES = 1 << 20  # the most entries written to the NetCDF file at a time


@dataclass(frozen=True)
class ParquetReport:
    """What ``parquet_to_netcdf`` read and wrote."""

    rows: int             # rows of the Parquet table
    n_users: int          # examples (users.idx)
    n_items: int          # features (items.idx)
    nnz: int              # entries written, after merging repeats
    merged: int           # repeated (user, item) rows merged
    ranges: int           # passes over the file that gathered rows
    value_dtype: str | None  # dtype of the values as written; None for an indicator dataset


def parquet_to_netcdf(path: str | os.PathLike, out: str | os.PathLike, *, user_col: str, item_col: str,
                      value_col: str | None = None, name: str = "input", memory_budget: str | int | None = None,
                      index_dir: str | os.PathLike | None = None) -> ParquetReport:
    """Convert the Parquet file ``path`` into the DSSTNE dataset ``out`` (one sparse dataset
    ``name``, users × items) and ``users.idx``/``items.idx`` in ``index_dir`` (default: beside
    ``out``). Rows may come in any order. ``value_col``: None writes an indicator dataset.
    ``memory_budget``: bytes of rows held at once (``2GB``, ``512MiB``; default as
    ``destiny train --memory-budget``); a smaller budget means more passes over the file.

    DataError naming the file and column for a missing column, a label column that is not
    integers or strings, a null label or value, a non-finite value, or an empty table.
    """
    from destiny.data.budget import memory_budget as budget_of
    from destiny.io.inputs import check_input

    pq = _pyarrow_parquet()
    path, out = os.fspath(path), os.fspath(out)
    if user_col == item_col:
        raise UsageError(f"the user and item columns are both '{user_col}'; give the users and items as two columns")
    if not name or any(c in name for c in "\t\n\r"):
        raise UsageError(f"dataset name {name!r} must be non-empty, without TABs or line breaks")
    budget = budget_of(memory_budget)
    check_input(path)
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:  # missing, unreadable, or not Parquet (ArrowInvalid)
        raise DataError(f"{path}: cannot read it as Parquet ({exc})") from exc
    table = _Table(parquet, path, user_col, item_col, value_col, budget)
    census = table.census()
    ranges = _user_ranges(census.counts, max(1, budget // table.row_bytes))
    index_dir = os.path.dirname(os.path.abspath(out)) if index_dir is None else os.fspath(index_dir)
    os.makedirs(index_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{os.path.basename(out)}.", dir=os.path.dirname(os.path.abspath(out))) \
            as scratch:
        entries = _Entries(scratch, census)
        for first, stop in ranges:
            entries.append(first, *table.gather(census, first, stop))
        data_type = entries.finish(out, name)
        with staged() as stage:
            write_index_pairs(os.path.join(index_dir, "users.idx"), _numbered(census.users), "user", stage=stage)
            write_index_pairs(os.path.join(index_dir, "items.idx"), _numbered(census.items), "item", stage=stage)
            _write(out, name, entries, data_type, int(min(SLICE_ENTRIES, max(4096, budget // 32))), stage)
    merged = census.rows - entries.nnz
    if merged:
        how = "one entry kept" if value_col is None else "values summed"
        warnings.warn(f"{path}: merged {merged:,} repeated (user, item) rows ({how})", DataWarning, stacklevel=2)
    return ParquetReport(census.rows, len(census.users), len(census.items), entries.nnz, merged, len(ranges),
                         None if entries.stored is None else str(entries.stored))


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ResourceError("reading Parquet needs pyarrow, which is not installed: pip install pyarrow "
                            "(or pip install destiny[parquet])") from None
    return pq


def _numbered(labels):
    """(label, index) pairs of a sorted Arrow array, a slice at a time."""
    for start in range(0, len(labels), 65536):
        yield from zip(labels.slice(start, 65536).to_pylist(), range(start, start + 65536))


@dataclass
class _Census:
    """Pass 1: the sorted distinct labels, rows per user, and the value type."""

    users: object         # pyarrow Array, sorted
    items: object         # pyarrow Array, sorted
    counts: np.ndarray    # (n_users,) int64 rows of each user
    rows: int
    values: np.dtype | None  # exact_values' type of the whole column (None: indicator)


class _Table:
    """The Parquet file's three columns, read batch by batch."""

    def __init__(self, parquet, path: str, user_col: str, item_col: str, value_col: str | None, budget: int):
        self.parquet, self.path = parquet, path
        self.user_col, self.item_col, self.value_col = user_col, item_col, value_col
        self.columns = [user_col, item_col] + ([value_col] if value_col else [])
        self.row_bytes = ROW_BYTES + (VALUE_BYTES if value_col else 0)
        self.batch_rows = int(min(1 << 20, max(256, budget // (4 * self.row_bytes))))
        self._check_schema()

    def _check_schema(self) -> None:
        import pyarrow as pa

        schema = self.parquet.schema_arrow
        for column in self.columns:
            if schema.get_field_index(column) < 0:
                raise DataError(f"{self.path}: no column '{column}'; it has {', '.join(schema.names)}")
        for column in (self.user_col, self.item_col):
            kind = _value_type(schema.field(column).type)
            if not (pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise DataError(f"{self.path}: column '{column}' holds {kind}; labels must be integers or strings "
                                "(cast it)")
        if self.value_col:
            kind = _value_type(schema.field(self.value_col).type)
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
                raise DataError(f"{self.path}: column '{self.value_col}' holds {kind}, not numbers")

    def batches(self, columns):
        """(first row, {column: Arrow array}) for each batch."""
        row = 0
        for batch in self.parquet.iter_batches(batch_size=self.batch_rows, columns=columns):
            yield row, {column: _decoded(batch.column(column)) for column in columns}
            row += batch.num_rows

    def census(self) -> _Census:
        """Pass 1 over every column: checks, distinct labels, user counts, value type."""
        import pyarrow.compute as pc

        users, items, witnesses = _Distinct(counted=True), _Distinct(counted=False), []
        rows = 0
        for row, batch in self.batches(self.columns):
            for column, array in batch.items():
                if array.null_count:
                    at = row + int(pc.index(pc.is_null(array), True).as_py())
                    raise DataError(f"{self.path}: column '{column}' is null in row {at:,}; drop or fill those rows "
                                    "first")
            users.add(batch[self.user_col])
            items.add(batch[self.item_col])
            if self.value_col:
                values = batch[self.value_col].to_numpy(zero_copy_only=False)
                finite = np.isfinite(values) if values.dtype.kind == "f" else None
                if finite is not None and not finite.all():
                    at = int(np.argmin(finite))
                    raise DataError(f"{self.path}: column '{self.value_col}' holds {values[at]} in row {row + at:,}; "
                                    "values must be finite")
                witnesses.append(_witness(values))
            rows += len(batch[self.user_col])
        if not rows:
            raise DataError(f"{self.path}: the table has no rows; DSSTNE cannot load an empty dataset")
        user_labels, counts = users.result()
        item_labels, _ = items.result()
        kind = exact_values(np.concatenate(witnesses)).dtype if self.value_col else None
        return _Census(user_labels, item_labels, counts, rows, kind)

    def gather(self, census: _Census, first: int, stop: int):
        """One pass: the rows of users first..stop-1, sorted by (user, item, value) →
        (rows relative to ``first``, items, values as read or None)."""
        import pyarrow.compute as pc

        parts = []
        for _, batch in self.batches(self.columns):
            users = pc.index_in(batch[self.user_col], value_set=census.users).to_numpy()
            keep = np.flatnonzero((users >= first) & (users < stop))
            if not len(keep):
                continue
            items = pc.index_in(batch[self.item_col].take(keep), value_set=census.items).to_numpy()
            values = batch[self.value_col].take(keep).to_numpy(zero_copy_only=False) if self.value_col else None
            parts.append((users[keep].astype(np.int64) - first, items.astype(np.int64), values))
        rows = np.concatenate([p[0] for p in parts])
        items = np.concatenate([p[1] for p in parts])
        values = np.concatenate([p[2] for p in parts]) if self.value_col else None
        del parts
        order = np.lexsort((items, rows) if values is None else (values, items, rows))
        return rows[order], items[order], None if values is None else values[order]


def _value_type(kind):
    import pyarrow as pa

    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _decoded(array):
    """A dictionary-encoded column (pandas categories) as its plain values."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


class _Distinct:
    """Distinct labels (and their row counts) of batches; merges when the pending batches hold
    as many as the result so far (amortised: each label is merged O(log) times). Plain
    kernels (unique, index_in), not a hash group-by, which held ~100 MB more for 1M rows."""

    def __init__(self, counted: bool):
        self.counted = counted
        self.labels, self.counts = None, None  # pyarrow Array, numpy int64 (counted)
        self.pending, self.pending_size = [], 0

    def add(self, array) -> None:
        import pyarrow.compute as pc

        if self.counted:
            found = pc.value_counts(array)
            part = (found.field("values"), found.field("counts").to_numpy().astype(np.int64))
        else:
            part = (pc.unique(array), None)
        self.pending.append(part)
        self.pending_size += len(part[0])
        if self.pending_size >= max(65536, len(self.labels) if self.labels is not None else 0):
            self._merge()

    def _merge(self) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        parts = self.pending + ([(self.labels, self.counts)] if self.labels is not None else [])
        labels = pa.concat_arrays([p[0].cast(parts[0][0].type) for p in parts])
        self.labels = pc.unique(labels)
        if self.counted:
            at = pc.index_in(labels, value_set=self.labels).to_numpy()
            self.counts = np.zeros(len(self.labels), dtype=np.int64)
            np.add.at(self.counts, at, np.concatenate([p[1] for p in parts]))
        self.pending, self.pending_size = [], 0

    def result(self):
        """(sorted labels as an Arrow array, counts (int64) or None)."""
        import pyarrow.compute as pc

        self._merge()
        order = pc.sort_indices(self.labels)
        return self.labels.take(order), None if self.counts is None else self.counts[order.to_numpy()]


def _witness(values: np.ndarray) -> np.ndarray:
    """A few of ``values`` on which ``exact_values`` picks the type it picks on them all: the
    least and greatest, and one value that float32 cannot hold and one that is not whole, if
    any (its choice depends on nothing else)."""
    if not values.size:
        return values[:0]
    picks = [values.min(), values.max()]
    if values.dtype.kind == "f" and values.dtype != np.float32:
        lossy = values.astype(np.float32) != values
        if lossy.any():
            picks.append(values[np.argmax(lossy)])
        fractional = np.floor(values) != values
        if fractional.any():
            picks.append(values[np.argmax(fractional)])
    return np.array(picks, dtype=values.dtype)


def _user_ranges(counts: np.ndarray, most_rows: int) -> list[tuple[int, int]]:
    """Consecutive user ranges [first, stop) of at most ``most_rows`` rows each (a user with more
    rows than that is a range of its own)."""
    ends = np.cumsum(counts)
    ranges, first = [], 0
    while first < len(counts):
        before = int(ends[first - 1]) if first else 0
        stop = max(first + 1, int(np.searchsorted(ends, before + most_rows, side="right")))
        ranges.append((first, stop))
        first = stop
    return ranges


class _Entries:
    """The merged entries of the ranges, appended to raw files in ``scratch``: per-user counts
    in memory, indices in their NetCDF type, values summed exactly (float64 or int64)."""

    def __init__(self, scratch: str, census: _Census):
        self.census = census
        self.counts = np.zeros(len(census.users), dtype=np.int64)
        self.index_type = np.uint32 if len(census.items) <= (1 << 32) else np.uint64
        self.wide = None if census.values is None else np.dtype(np.float64 if census.values.kind == "f" else np.int64)
        self.index_file = os.path.join(scratch, "indices")
        self.value_file = os.path.join(scratch, "values")
        self.nnz, self.merged, self.witnesses = 0, 0, []
        self.stored = None

    def append(self, first: int, rows: np.ndarray, items: np.ndarray, values: np.ndarray | None) -> None:
        n_users = int(rows[-1]) + 1 if len(rows) else 0
        offsets = csr.counts_to_offsets(np.bincount(rows, minlength=n_users))
        if values is not None:
            values = values.astype(self.census.values)  # exact: the type holds every value
        offsets, items, values, removed = csr.merge_duplicates(offsets, items, values, len(self.census.items))
        self.counts[first:first + len(offsets) - 1] = np.diff(offsets)
        self.nnz += len(items)
        self.merged += removed
        with open(self.index_file, "ab") as stream:
            stream.write(items.astype(self.index_type).tobytes())
        if values is not None:
            values = values.astype(self.wide)
            self.witnesses.append(_witness(values))
            with open(self.value_file, "ab") as stream:
                stream.write(values.tobytes())

    def finish(self, out: str, name: str) -> DataType:
        """The values' type as written (that of the whole dataset merged in memory) and its code."""
        if self.wide is None:
            return DataType.UINT
        kind = exact_values(np.concatenate(self.witnesses)).dtype if self.merged else self.census.values
        sample, data_type = _stored_values(np.concatenate(self.witnesses).astype(kind), out, name)
        self.stored = sample.dtype
        return data_type

    def indices(self) -> "_RawFile":
        return _RawFile(self.index_file, self.index_type, self.nnz)

    def values(self) -> "_RawFile":
        return _RawFile(self.value_file, self.wide, self.nnz)


class _RawFile:
    """A raw array file read by slices (``np.fromfile``: a memory map would keep the pages read
    resident in this process)."""

    def __init__(self, path: str, dtype, size: int):
        self.path, self.dtype, self.size = path, np.dtype(dtype), size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, part: slice) -> np.ndarray:
        start, stop, _ = part.indices(self.size)
        return np.fromfile(self.path, dtype=self.dtype, count=max(0, stop - start), offset=start * self.dtype.itemsize)


def _write(out: str, name: str, entries: _Entries, data_type: DataType, slice_entries: int, stage: Staged) -> None:
    """The NetCDF file as ``write_netcdf`` writes the dataset, ``slice_entries`` at a time, into ``stage``."""
    import netCDF4

    names = Names(0)
    attributes = Attribute.SPARSE | (Attribute.BOOLEAN if entries.stored is None else Attribute.NONE)
    n_users, n_items = len(entries.counts), len(entries.census.items)
    sums = Recorder()
    with atomic_path(out, stage=stage) as tmp:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            nc.set_fill_off()
            nc.setncattr(Names.DATASETS, np.uint32(1))
            _header_attrs(nc, names, name, attributes, Kind.NUMERIC, data_type, (n_items,))
            nc.createDimension(names.examplesDim, n_users)
            nc.createDimension(names.sparseDataDim, entries.nnz)
            offset_type = _offset_dtype(entries.nnz)
            offsets = csr.counts_to_offsets(entries.counts)
            columns = [(names.sparseStart, offset_type, names.examplesDim, offsets[:-1]),
                       (names.sparseEnd, offset_type, names.examplesDim, offsets[1:]),
                       (names.sparseIndex, entries.index_type, names.sparseDataDim, entries.indices())]
            if entries.stored is not None:
                columns.append((names.sparseData, entries.stored, names.sparseDataDim, entries.values()))
            for variable, dtype, dim, source in columns:  # each written whole before the next, as write_netcdf
                target = nc.createVariable(variable, dtype, (dim,), contiguous=True)
                target.set_auto_maskandscale(False)
                for start in range(0, len(source), slice_entries):
                    part = source[start:start + slice_entries].astype(dtype)
                    target[start:start + slice_entries] = part
                    sums.add(variable, part)
            sums.store(nc)


__all__ = ["ParquetReport", "parquet_to_netcdf"]
