"""DSSTNE dataset files (NetCDF, reference/dsstne.md §3): read every layout DSSTNE's writers
produce, write exactly what its reader loads.

Read: several datasets a file; sparse (indicator or analog) and dense (dense Boolean
"compressed one-hot" is expanded); ``sparseStart``/``sparseEnd`` as uint32, uint64 or signed,
rows given by arbitrary start/end pairs; ``dataType<n>`` or the engine writer's ``datatype<n>``;
Indexed datasets (expanded through ``index<n>``); Weighted (``dataWeight<n>``). Width is kept as
stored (generateNetCDF rounds it up to a multiple of 128).

Checksums (``data.checksums``): a file Destiny wrote carries a CRC-32 of every variable and of
the attributes; each variable read, and the attributes, are checked against them (DataError
naming the file and the variable). DSSTNE's files have none and are read as before.

Write (netcdf_write.py): generateNetCDF's layout (netCDF-4, unsigned attributes, ``uint``
start/end/index), ``uint64`` start/end past 2^32 − 1 entries, and ``dataType`` spelled as
DSSTNE's reader expects.

``import netCDF4`` happens inside the functions: machines without it can still import Destiny.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from destiny.data import checksums, csr
from destiny.data.budget import in_memory_bytes, require_memory
from destiny.data.dataset import INT32_LIMIT, Dataset, DenseDataset, SparseDataset, exact_values
from destiny.data.layout import DATA_TYPE_OF, KNOWN_ATTRIBUTES, Attribute, DataType, Names
from destiny.errors import DataError, DataWarning, DestinyError
from destiny.io.inputs import open_input
from destiny.io.limits import allocation_error, variable_too_big

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CLASSIC_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
_READ_SLICE = 1 << 20  # entries read at a time
_FIX = "regenerate it with `destiny generate` or destiny.data.write_netcdf"


@dataclass(frozen=True)
class DatasetInfo:
    """What a file's header says about one dataset (``inspect_netcdf``; no arrays read)."""

    index: int  # n in name<n>, sparseStart<n>, ...
    name: str
    attributes: Attribute
    data_type: DataType
    dims: tuple[int, ...]
    n_examples: int
    n_unique: int  # stored rows: differs from n_examples only for Indexed datasets
    nnz: int | None  # stored sparse entries; None for dense datasets

    @property
    def sparse(self) -> bool:
        return bool(self.attributes & Attribute.SPARSE)

    @property
    def n_features(self) -> int:
        return math.prod(self.dims)


class _File:
    """An open DSSTNE file: typed, checked access to its attributes, dimensions and variables."""

    def __init__(self, nc, path: str, size: int):
        self.nc, self.path, self.size = nc, path, size  # size: the file's bytes
        self.sums = checksums.stored(nc, path)  # None: a file without checksums (DSSTNE's)

    def fail(self, message: str) -> DataError:
        return DataError(f"{self.path}: {message}")

    def check_allocation(self, nbytes: int, what: str) -> None:
        """DataError if what the file's counts expand to cannot fit in memory."""
        refused = allocation_error(nbytes, what)
        if refused:
            raise self.fail(f"{refused}; the file's counts are wrong (damaged or forged), or read it on a larger machine")

    def has_attr(self, name: str) -> bool:
        return name in self.nc.ncattrs()

    def int_attr(self, name: str, default: int | None = None, what: str = "") -> int:
        if not self.has_attr(name):
            if default is not None:
                return default
            raise self.fail(f"{what}has no global attribute '{name}'; {_FIX}")
        value = np.asarray(self.nc.getncattr(name)).ravel()
        if value.size != 1 or value.dtype.kind not in "iuf" or value[0] != np.floor(value[0]) or value[0] < 0:
            raise self.fail(f"attribute '{name}' is {self.nc.getncattr(name)!r}; it must be one non-negative integer")
        return int(value[0])

    def text_attr(self, name: str, what: str) -> str:
        if not self.has_attr(name):
            raise self.fail(f"{what}has no global attribute '{name}'; {_FIX}")
        value = self.nc.getncattr(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            raise self.fail(f"attribute '{name}' is {value!r}; it must be text (the dataset name)")
        return value

    def dim(self, name: str) -> int | None:
        dim = self.nc.dimensions.get(name)
        return None if dim is None else len(dim)

    def read(self, name: str, length: int | None, what: str) -> np.ndarray:
        var = self.nc.variables.get(name)
        if var is None:
            raise self.fail(f"{what}has no variable '{name}'; {_FIX}")
        if var.ndim != 1 or (length is not None and var.shape[0] != length):
            raise self.fail(f"{what}variable '{name}' has shape {var.shape}, expected ({length},)")
        too_big = variable_too_big(var, self.size)
        if too_big:
            raise self.fail(f"{what}{too_big}; {_FIX}")
        try:  # in slices: netCDF4's var[:] holds two copies of the whole variable at its peak
            out = np.empty(var.shape, dtype=var.dtype)
            for lo in range(0, len(out), _READ_SLICE):
                out[lo:lo + _READ_SLICE] = var[lo:lo + _READ_SLICE]
        except (OSError, RuntimeError, IndexError, ValueError) as exc:
            raise self.fail(f"cannot read variable '{name}' ({exc}): the file is damaged or truncated; {_FIX}") from None
        checksums.verify(self.path, self.sums, name, out, what)
        return out

    def verify(self, name: str, what: str = "", slice_values: int = _READ_SLICE) -> None:
        """Check a variable against its checksum without keeping it: read ``slice_values`` at a time."""
        if self.sums is None or name not in self.sums["variables"]:
            return
        var = self.nc.variables[name]
        too_big = variable_too_big(var, self.size)
        if too_big:
            raise self.fail(f"{what}{too_big}; {_FIX}")
        crc = 0
        try:
            for lo in range(0, var.shape[0], slice_values):
                crc = checksums.crc32(var[lo:lo + slice_values], crc)
        except (OSError, RuntimeError, IndexError, ValueError) as exc:
            raise self.fail(f"cannot read variable '{name}' ({exc}): the file is damaged or truncated; {_FIX}") from None
        checksums.verify(self.path, self.sums, name, None, what, crc=crc)


@contextlib.contextmanager
def _open(path: str | os.PathLike) -> Iterator[_File]:
    import netCDF4

    path = os.fspath(path)
    with open_input(path) as stream:  # a missing file raises FileNotFoundError here; a FIFO UsageError
        head = stream.read(8)
        size = stream.seek(0, os.SEEK_END)
    if head[:4] not in _CLASSIC_MAGIC and head != _HDF5_MAGIC:
        kind = "an empty file" if size == 0 else f"a file starting with {head!r}"
        raise DataError(f"{path}: not a NetCDF file ({kind}); give a DSSTNE dataset file (.nc) made by "
                        "generateNetCDF or `destiny generate`")
    try:
        nc = netCDF4.Dataset(path, "r")
    except (OSError, RuntimeError, AttributeError, IndexError, ValueError) as exc:  # netCDF4 on a damaged header
        raise DataError(f"{path}: cannot open it as NetCDF ({getattr(exc, 'strerror', None) or exc}): the file is damaged or "
                        f"truncated; {_FIX}") from None
    try:
        nc.set_auto_maskandscale(False)
        yield _File(nc, path, size)
    except DestinyError:
        raise
    except (OSError, RuntimeError, AttributeError, IndexError, ValueError, OverflowError) as exc:
        # what netCDF4 raises on a damaged header or attribute (AttributeError: "Can't open HDF5 attribute")
        raise DataError(f"{path}: the file is damaged ({type(exc).__name__}: {exc}); {_FIX}") from None
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            nc.close()


def _headers(f: _File) -> list[DatasetInfo]:
    checksums.verify_attributes(f.nc, f.path, f.sums)
    if not f.has_attr(Names.DATASETS):
        held = ", ".join(list(f.nc.variables)[:8]) or "no variables"
        network = " (it looks like a DSSTNE network file)" if f.has_attr("layers") else ""
        raise f.fail(f"not a DSSTNE dataset file{network}: it has no global attribute 'datasets' (it holds "
                     f"{held}); convert the data with `destiny generate` or destiny.data.write_netcdf")
    count = f.int_attr(Names.DATASETS)
    if count < 1:
        raise f.fail("attribute 'datasets' is 0: the file holds no dataset")
    return [_header(f, n) for n in range(count)]


def _header(f: _File, n: int) -> DatasetInfo:
    names = Names(n)
    what = f"dataset {n} "
    name = f.text_attr(names.name, what)
    what = f"dataset {n} ('{name}') "
    attributes = f.int_attr(names.attributes, what=what)
    if attributes & ~int(KNOWN_ATTRIBUTES):
        raise f.fail(f"{what}has attributes {attributes}, with bits DSSTNE does not define (known: 1, 2, 32, 64, 128)")
    attributes = Attribute(attributes)
    n_dims = f.int_attr(names.dimensions, what=what)
    if not 1 <= n_dims <= 3:
        raise f.fail(f"{what}has {names.dimensions} = {n_dims}; it must be 1, 2 or 3")
    dims = tuple(f.int_attr(attr, what=what) for attr in (names.width, names.height, names.length)[:n_dims])
    if min(dims) < 1:
        raise f.fail(f"{what}has a zero size in width/height/length {dims}")
    n_examples = f.dim(names.examplesDim)
    if n_examples is None:
        raise f.fail(f"{what}has no dimension '{names.examplesDim}'; {_FIX}")
    if n_examples == 0:  # DSSTNE cannot load one either, and Destiny's writer refuses it
        raise f.fail(f"{what}has no examples ('{names.examplesDim}' is 0): there is nothing to train on, score or "
                     "evaluate; give a dataset with at least one example")
    n_unique = f.dim(names.uniqueExamplesDim) if attributes & Attribute.INDEXED else None
    n_unique = n_examples if n_unique is None else n_unique
    nnz = None
    if attributes & Attribute.SPARSE:
        nnz = f.dim(names.sparseDataDim)
        if nnz is None:
            var = f.nc.variables.get(names.sparseIndex)
            nnz = None if var is None else int(var.shape[0])
    return DatasetInfo(n, name, attributes, _data_type(f, names, attributes, what), dims, n_examples, n_unique, nnz)


def _data_type(f: _File, names: Names, attributes: Attribute, what: str) -> DataType:
    for attr in (names.dataType, names.datatype_quirk):
        if f.has_attr(attr):
            code = f.int_attr(attr, what=what)
            if code not in DataType._value2member_map_:
                raise f.fail(f"{what}has {attr} = {code}, which is not a DSSTNE data type (0..9)")
            return DataType(code)
    var = f.nc.variables.get(names.sparseData if attributes & Attribute.SPARSE else names.data)
    if var is not None and np.dtype(var.dtype) in DATA_TYPE_OF:
        return DATA_TYPE_OF[np.dtype(var.dtype)]
    return DataType.UINT


def inspect_netcdf(path: str | os.PathLike) -> list[DatasetInfo]:
    """Names, dims, example and entry counts of every dataset in the file, without reading arrays."""
    with _open(path) as f:
        return _headers(f)


def read_netcdf(path: str | os.PathLike, name: str | None = None, *, duplicates: str = "merge") -> list[Dataset]:
    """Every dataset in the file (in file order), or only the one called ``name``.

    ``duplicates``: "merge" (a feature listed twice in an example is merged, with a DataWarning;
    see SparseDataset.deduplicate) or "error" (DataError).
    """
    if duplicates not in ("merge", "error"):
        raise ValueError(f"duplicates must be 'merge' or 'error', not {duplicates!r}")
    with _open(path) as f:
        infos = _headers(f)
        if name is not None:
            infos = [_select(f, infos, name)]
        return [_read(f, info, duplicates) for info in infos]


def read_dataset(path: str | os.PathLike, name: str, *, duplicates: str = "merge") -> Dataset:
    """The dataset called ``name``; DataError listing the file's names if there is none."""
    return read_netcdf(path, name, duplicates=duplicates)[0]


def _select(f: _File, infos: list[DatasetInfo], name: str) -> DatasetInfo:
    for info in infos:
        if info.name == name:
            return info
    held = ", ".join(f"'{info.name}'" for info in infos)
    raise f.fail(f"no dataset named '{name}'; the file holds {held}")


def _read(f: _File, info: DatasetInfo, duplicates: str) -> Dataset:
    names = Names(info.index)
    what = f"dataset '{info.name}' "
    need = in_memory_bytes(info)
    if need > 1 << 28:  # held whole: against the memory free now, before reading
        entries = f", {info.nnz:,} nonzeros" if info.sparse else " (dense)"
        stream = ("stream it from disk (--stream, or destiny.data.stream.StreamingSparseDataset), "
                  if info.sparse else "")
        require_memory(need, f"{f.path}: {what}({info.n_examples:,} examples × {info.n_features:,}{entries}) read whole",
                       fix=f"{stream}split it into smaller files, or read it on a machine with more memory")
    rows = None
    if info.attributes & Attribute.INDEXED:
        rows = f.read(names.index, info.n_examples, what).astype(np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= info.n_unique):
            raise f.fail(f"{what}variable '{names.index}' points outside its {info.n_unique} stored rows")
    if info.sparse:
        dataset = _read_sparse(f, info, names, rows, duplicates)
    else:
        dataset = _read_dense(f, info, names, rows)
    if info.attributes & Attribute.WEIGHTED:
        weights = f.read(names.dataWeight, None, what).astype(np.float32)
        if rows is not None and len(weights) == info.n_unique != info.n_examples:
            weights = weights[rows]  # DSSTNE's engine writer stores one weight a stored row
        if len(weights) != info.n_examples:
            raise f.fail(f"{what}variable '{names.dataWeight}' has {len(weights)} weights for "
                         f"{info.n_examples} examples")
        if not np.isfinite(weights).all():
            raise f.fail(f"{what}example {int(np.argmin(np.isfinite(weights)))} has a weight that is not finite")
        dataset.weights = weights
    return dataset


def _read_sparse(f: _File, info: DatasetInfo, names: Names, rows, duplicates: str) -> SparseDataset:
    what = f"dataset '{info.name}' "
    starts = f.read(names.sparseStart, info.n_unique, what)
    ends = f.read(names.sparseEnd, info.n_unique, what)
    raw = f.read(names.sparseIndex, info.nnz, what)  # (nnz,) uint32 from DSSTNE's tools
    nnz = len(raw)
    for array, var in ((starts, names.sparseStart), (ends, names.sparseEnd), (raw, names.sparseIndex)):
        if array.dtype.kind not in "iu":
            raise f.fail(f"{what}variable '{var}' holds {array.dtype}, not integers")
    starts, ends = starts.astype(np.int64), ends.astype(np.int64)
    bad = np.flatnonzero((starts < 0) | (ends < starts) | (ends > nnz))
    if bad.size:
        i = int(bad[0])
        raise f.fail(f"{what}row {i} spans entries {starts[i]}..{ends[i]}, outside 0..{nnz} "
                     f"({names.sparseStart}/{names.sparseEnd} are inconsistent); {_FIX}")
    indices = _checked_indices(f, info, raw, starts, ends)
    values = None
    if not info.attributes & Attribute.BOOLEAN:
        values = f.read(names.sparseData, nnz, what)
        if values.dtype.kind not in "iuf":
            raise f.fail(f"{what}variable '{names.sparseData}' holds {values.dtype}, not numbers")
        values = exact_values(values)
    contiguous = nnz == 0 or (len(starts) and starts[0] == 0 and ends[-1] == nnz
                              and np.array_equal(starts[1:], ends[:-1]))
    if contiguous and len(starts) and rows is None:
        offsets = np.concatenate([starts, ends[-1:]])
    else:  # rows from arbitrary (start, end) pairs, or through the Indexed indirection
        if rows is not None:
            starts, ends = starts[rows], ends[rows]
        entry_bytes = 8 + indices.itemsize + (0 if values is None else values.itemsize)  # position, index, value
        f.check_allocation(int((ends - starts).sum()) * entry_bytes, f"{what}(its rows' entries)")
        offsets, positions = csr.gather_rows(starts, ends)
        indices = indices[positions]
        values = None if values is None else values[positions]
    dataset = SparseDataset(info.name, info.dims, offsets, indices, values,
                            ignore_zero=bool(info.attributes & Attribute.SPARSE_IGNORE_ZERO))
    if values is not None and values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            at = int(bad[0])
            raise f.fail(f"{what}example {csr.row_of(offsets, at)} has value {values[at]} for feature "
                         f"{indices[at]}; values must be finite")
    return _deduplicated(f, dataset, duplicates)


def _checked_indices(f: _File, info: DatasetInfo, raw: np.ndarray, starts, ends) -> np.ndarray:
    """Feature indices as int32 (a view of DSSTNE's uint32, no copy) after a range check."""
    n = info.n_features
    if raw.size and ((raw.dtype.kind == "i" and raw.min() < 0) or raw.max() >= n):
        at = int(np.argmax(raw >= n)) if raw.max() >= n else int(np.argmin(raw))
        owner = np.flatnonzero((starts <= at) & (at < ends))
        where = f"example {int(owner[0])}" if owner.size else f"entry {at}"
        raise f.fail(f"dataset '{info.name}': {where} has feature index {raw[at]}, outside 0..{n - 1} "
                     f"(width×height×length = {' × '.join(map(str, info.dims))}); the file is inconsistent, {_FIX}")
    if n < INT32_LIMIT:
        return raw.view(np.int32) if raw.dtype in (np.uint32, np.int32) else raw.astype(np.int32)
    return raw.astype(np.int64)


def _deduplicated(f: _File, dataset: SparseDataset, duplicates: str) -> SparseDataset:
    merged, removed = dataset.deduplicate()
    if removed and duplicates == "error":
        try:
            dataset.validate()
        except DataError as exc:  # names the first example and feature
            raise f.fail(str(exc)) from None
    if removed:
        warnings.warn(f"{f.path}: dataset '{dataset.name}': merged {removed:,} repeated features within examples "
                      f"({'values summed' if dataset.values is not None else 'one entry kept'})",
                      DataWarning, stacklevel=4)
    return merged


def _read_dense(f: _File, info: DatasetInfo, names: Names, rows) -> DenseDataset:
    what = f"dataset '{info.name}' "
    n, shape = info.n_unique, tuple(reversed(info.dims))
    f.check_allocation((n if rows is None else max(n, len(rows))) * info.n_features * 4, f"{what}(dense)")
    if info.attributes & Attribute.BOOLEAN:  # compressed one-hot: one hot index an example
        hot = f.read(names.data, n, what)
        if hot.dtype.kind not in "iu" or (hot.size and hot.max() >= info.n_features):
            raise f.fail(f"{what}(dense Boolean) holds a hot index outside 0..{info.n_features - 1}")
        data = np.zeros((n, info.n_features), dtype=np.float32)
        data[np.arange(n), hot.astype(np.int64)] = 1.0
    else:
        data = f.read(names.data, n * info.n_features, what)
    data = data.reshape((n,) + shape)
    if rows is not None:
        data = data[rows]
    return DenseDataset(info.name, info.dims, data)
