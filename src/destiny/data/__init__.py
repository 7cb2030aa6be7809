"""Sparse and dense datasets: DSSTNE NetCDF files, DSSTNE text, pandas/scipy interop, synthetic data.

    SparseDataset, DenseDataset           in-memory datasets (dataset.py)
    read_netcdf, read_dataset, write_netcdf, inspect_netcdf    DSSTNE NetCDF files (netcdf.py)

Nothing here imports netCDF4 or pandas until a function needs it.
"""

from destiny.data.dataset import Dataset, DenseDataset, SparseDataset, exact_values, index_dtype
from destiny.data.layout import Attribute, DataType, round_up_128
from destiny.data.netcdf import DatasetInfo, inspect_netcdf, read_dataset, read_netcdf, write_netcdf

__all__ = [
    "Attribute", "DataType", "Dataset", "DatasetInfo", "DenseDataset", "SparseDataset", "exact_values",
    "index_dtype", "inspect_netcdf", "read_dataset", "read_netcdf", "round_up_128", "write_netcdf",
]
