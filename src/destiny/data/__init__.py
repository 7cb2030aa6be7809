"""Sparse and dense datasets: DSSTNE NetCDF files, DSSTNE text, pandas/scipy interop, synthetic data.

    SparseDataset, DenseDataset           in-memory datasets (dataset.py)
    read_netcdf, read_dataset, write_netcdf, inspect_netcdf    DSSTNE NetCDF files (netcdf*.py)
    read_text, write_text, read_index, write_index             DSSTNE text and index files (text.py, index.py)
    generate_netcdf                       DSSTNE's generateNetCDF (generate.py)
    read_interactions, split_interactions, split_dataset, to_datasets   ratings tables (convert.py)
    from_scipy, to_scipy, from_pandas, to_pandas                interop (interop.py)
    read_shards, merge_shards             a dataset in NetCDF shards, as destiny.spark writes it (shards.py)
    synthesize                            MovieLens-20M-like synthetic data (synth.py)
    images_to_datasets, npz_to_netcdf     image classification data, DSSTNE's CIFAR layout (images.py)

Nothing here imports netCDF4 or pandas until a function needs it.
"""

from destiny.data.convert import Interactions, read_interactions, split_dataset, split_interactions, to_datasets
from destiny.data.dataset import Dataset, DenseDataset, SparseDataset, exact_values, index_dtype
from destiny.data.generate import GenerateReport, generate_netcdf
from destiny.data.images import images_to_datasets, labels_to_dataset, npz_to_netcdf
from destiny.data.index import labels_by_index, read_index, write_index
from destiny.data.interop import factorize, from_pandas, from_scipy, to_pandas, to_scipy
from destiny.data.layout import Attribute, DataType, round_up_128
from destiny.data.netcdf import DatasetInfo, inspect_netcdf, read_dataset, read_netcdf
from destiny.data.netcdf_write import write_netcdf
from destiny.data.shards import ShardedDataset, merge_shards, read_shards
from destiny.data.synth import synthesize
from destiny.data.text import TextData, read_text, write_text

__all__ = [
    "Attribute", "DataType", "Dataset", "DatasetInfo", "DenseDataset", "GenerateReport", "Interactions",
    "ShardedDataset", "SparseDataset", "TextData", "exact_values", "factorize", "from_pandas", "from_scipy",
    "generate_netcdf", "images_to_datasets", "index_dtype", "inspect_netcdf", "labels_by_index",
    "labels_to_dataset", "merge_shards", "npz_to_netcdf", "read_dataset", "read_index", "read_interactions",
    "read_netcdf", "read_shards", "read_text", "round_up_128", "split_dataset", "split_interactions", "synthesize",
    "to_datasets", "to_pandas", "to_scipy", "write_index", "write_netcdf", "write_text",
]
