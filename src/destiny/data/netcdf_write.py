"""Write DSSTNE dataset files: generateNetCDF's layout (reference/dsstne.md §3.5) for sparse
datasets, DSSTNE's CIFAR converter's for dense ones; see destiny.data.netcdf for reading."""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

from destiny.data.checksums import Recorder
from destiny.data.dataset import Dataset, DenseDataset, SparseDataset
from destiny.data.layout import DATA_TYPE_OF, Attribute, DataType, Kind, Names
from destiny.errors import DataError, DataWarning
from destiny.io.atomic import Staged, atomic_path


def write_netcdf(path: str | os.PathLike, datasets: Dataset | Sequence[Dataset], *,
                 stage: Staged | None = None) -> None:
    """Write datasets into one DSSTNE file, atomically (the file is whole or absent; ``stage``:
    as one file of a set, ``io.atomic.staged``).

    Layout as generateNetCDF's for sparse data; dense datasets as DSSTNE's CIFAR converter,
    plus the checksums of every variable and of the attributes (``data.checksums``).
    Values keep their dtype: float32 → Float, float64 → Double, int32 → Int; int64 → Int when
    the values fit, else Double while they are within ±2^53 (DSSTNE cannot load LLInt), else
    LLInt with a DataWarning.
    """
    import netCDF4

    if isinstance(datasets, (SparseDataset, DenseDataset)):
        datasets = [datasets]
    datasets = list(datasets)
    _check_writable(path, datasets)
    sums = Recorder()
    with atomic_path(path, stage=stage) as tmp:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            nc.set_fill_off()
            nc.setncattr(Names.DATASETS, np.uint32(len(datasets)))
            for n, dataset in enumerate(datasets):
                if isinstance(dataset, SparseDataset):
                    _write_sparse(nc, Names(n), dataset, path, sums)
                else:
                    _write_dense(nc, Names(n), dataset, path, sums)
            sums.store(nc)


def _check_writable(path, datasets: list[Dataset]) -> None:
    if not datasets:
        raise DataError(f"{path}: no datasets to write")
    seen = set()
    for dataset in datasets:
        if not isinstance(dataset, (SparseDataset, DenseDataset)):
            raise DataError(f"{path}: cannot write a {type(dataset).__name__}; give SparseDataset or DenseDataset")
        if not dataset.name or dataset.name in seen:
            raise DataError(f"{path}: dataset names must be non-empty and distinct; '{dataset.name}' is not")
        seen.add(dataset.name)
        if dataset.n_examples == 0 or (isinstance(dataset, SparseDataset) and dataset.nnz == 0):
            raise DataError(f"{path}: dataset '{dataset.name}' is empty ({dataset.n_examples} examples, "
                            f"{dataset.nnz} nonzeros); DSSTNE cannot load an empty dataset")
        if isinstance(dataset, SparseDataset):
            dataset.validate(duplicates=False)
        else:
            dataset.validate()


def _header_attrs(nc, names: Names, name: str, attributes: int, kind: Kind, data_type: DataType, dims) -> None:
    nc.setncattr(names.name, name)
    nc.setncattr(names.attributes, np.uint32(attributes))
    nc.setncattr(names.kind, np.uint32(kind))
    nc.setncattr(names.dataType, np.uint32(data_type))
    nc.setncattr(names.dimensions, np.uint32(len(dims)))
    for attr, size in zip((names.width, names.height, names.length), dims):
        nc.setncattr(attr, np.uint32(size) if size < (1 << 32) else np.uint64(size))


def _stored_values(values: np.ndarray, path, name: str) -> tuple[np.ndarray, DataType]:
    """Values as written and their DSSTNE type code."""
    if values.dtype in (np.int64, np.uint64):
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if -(1 << 31) <= low and high < (1 << 31):
            return values.astype(np.int32), DataType.INT
        if -(1 << 53) <= low and high <= (1 << 53):
            return values.astype(np.float64), DataType.DOUBLE
        warnings.warn(f"{path}: dataset '{name}' has integer values beyond 2^53, written as LLInt (dataType 2), "
                      "which Destiny reads but DSSTNE cannot", DataWarning, stacklevel=4)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if values.dtype not in DATA_TYPE_OF:
        values = values.astype(np.float32)
    return values, DATA_TYPE_OF[values.dtype]


def _variable(nc, name: str, values: np.ndarray, dim: str, sums: Recorder) -> None:
    var = nc.createVariable(name, values.dtype, (dim,), contiguous=True)
    var.set_auto_maskandscale(False)
    var[:] = values
    sums.add(name, values)


def _offset_dtype(nnz: int) -> type:
    """sparseStart/sparseEnd type: DSSTNE's uint while the offsets fit, else uint64."""
    return np.uint32 if nnz < (1 << 32) else np.uint64


def _write_sparse(nc, names: Names, dataset: SparseDataset, path, sums: Recorder) -> None:
    attributes = Attribute.SPARSE
    if dataset.is_indicator:
        attributes |= Attribute.BOOLEAN
        values, data_type = None, DataType.UINT
    else:
        values, data_type = _stored_values(dataset.values, path, dataset.name)
    if dataset.ignore_zero:
        attributes |= Attribute.SPARSE_IGNORE_ZERO
    if dataset.weights is not None:
        attributes |= Attribute.WEIGHTED
    _header_attrs(nc, names, dataset.name, attributes, Kind.NUMERIC, data_type, dataset.dims)
    nc.createDimension(names.examplesDim, dataset.n_examples)
    nc.createDimension(names.sparseDataDim, dataset.nnz)
    offset_type = _offset_dtype(dataset.nnz)
    _variable(nc, names.sparseStart, dataset.offsets[:-1].astype(offset_type), names.examplesDim, sums)
    _variable(nc, names.sparseEnd, dataset.offsets[1:].astype(offset_type), names.examplesDim, sums)
    if dataset.n_features <= (1 << 32):  # uint32, as DSSTNE reads; int32 → uint32 is a free view
        indices = dataset.indices.view(np.uint32) if dataset.indices.dtype == np.int32 \
            else dataset.indices.astype(np.uint32)
    else:
        indices = dataset.indices.astype(np.uint64)
    _variable(nc, names.sparseIndex, indices, names.sparseDataDim, sums)
    if values is not None:
        _variable(nc, names.sparseData, values, names.sparseDataDim, sums)
    if dataset.weights is not None:
        _variable(nc, names.dataWeight, dataset.weights, names.examplesDim, sums)


def _write_dense(nc, names: Names, dataset: DenseDataset, path, sums: Recorder) -> None:
    data, data_type = _stored_values(np.ascontiguousarray(dataset.data).reshape(-1), path, dataset.name)
    attributes = Attribute.WEIGHTED if dataset.weights is not None else Attribute.NONE
    kind = Kind.IMAGE if len(dataset.dims) > 1 else Kind.NUMERIC
    _header_attrs(nc, names, dataset.name, attributes, kind, data_type, dataset.dims)
    nc.createDimension(names.examplesDim, dataset.n_examples)
    nc.createDimension(names.dataDim, data.size)
    _variable(nc, names.data, data, names.dataDim, sums)
    if dataset.weights is not None:
        _variable(nc, names.dataWeight, dataset.weights, names.examplesDim, sums)
