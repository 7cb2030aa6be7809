"""A sparse dataset written as several NetCDF shards (``destiny.spark.build_datasets``): each
shard is an ordinary DSSTNE file holding a contiguous range of rows, and ``shards.json`` lists
them in row order with the index files that label rows and columns.

    read_shards(directory)                       one SparseDataset, rows in order
    merge_shards(directory, "data.nc", names=("input", "output"))    one DSSTNE file to train on

Merging needs the whole dataset in memory (as ``destiny train`` does); nothing here needs Spark.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from destiny.data import csr
from destiny.data.dataset import SparseDataset, exact_values
from destiny.errors import DataError
from destiny.io.atomic import atomic_open
from destiny.io.inputs import open_text_input

MANIFEST = "shards.json"
FORMAT = "destiny-shards"


def shard_file(name: str, shard: int, shards: int) -> str:
    """File name of one shard: ``input-00003-of-00016.nc``."""
    return f"{name}-{shard:05d}-of-{shards:05d}.nc"


def shard_of_row(row, n_rows: int, shards: int):
    """The shard holding ``row`` (an int or an integer array) when ``n_rows`` rows are split
    into ``shards`` contiguous ranges by ``destiny.parallel.shard_bounds``' rule (shard s holds
    rows ⌊n·s/N⌋ to ⌊n·(s+1)/N⌋): ⌊(N·(row+1) − 1) / n⌋."""
    return (shards * (row + 1) - 1) // n_rows


@dataclass(frozen=True)
class Shard:
    file: str  # relative to the manifest's directory
    first_row: int
    rows: int
    nnz: int


@dataclass(frozen=True)
class ShardedDataset:
    """What ``shards.json`` says: the dataset's name and shape, its shards in row order, and
    the index files (``label<TAB>index``) of its rows (users) and columns (items)."""

    directory: str
    name: str
    n_rows: int
    n_columns: int
    nnz: int
    shards: tuple[Shard, ...]
    rows_index: str = "users.idx"
    columns_index: str = "items.idx"
    merged_duplicates: int = 0

    @property
    def paths(self) -> list[str]:
        return [os.path.join(self.directory, shard.file) for shard in self.shards]

    @property
    def rows_index_path(self) -> str:
        return os.path.join(self.directory, self.rows_index)

    @property
    def columns_index_path(self) -> str:
        return os.path.join(self.directory, self.columns_index)

    def write_manifest(self) -> None:
        fields = asdict(self)
        del fields["directory"]
        with atomic_open(os.path.join(self.directory, MANIFEST), "w") as stream:
            json.dump({"format": FORMAT, "version": 1, **fields}, stream, indent=1)
            stream.write("\n")

    @classmethod
    def read(cls, directory: str | os.PathLike) -> "ShardedDataset":
        directory = os.fspath(directory)
        path = os.path.join(directory, MANIFEST)
        try:
            with open_text_input(path) as stream:
                fields = json.load(stream)
        except FileNotFoundError:
            raise DataError(f"{directory}: no {MANIFEST}; give a directory written by destiny.spark.build_datasets "
                            "(or pass the shard files in row order to read_shards)") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not JSON ({exc}); rebuild the shards") from None
        if fields.pop("format", None) != FORMAT or fields.pop("version", None) != 1:
            raise DataError(f"{path}: not a version 1 '{FORMAT}' manifest; rebuild the shards")
        try:
            shards = tuple(Shard(**shard) for shard in fields.pop("shards"))
            return cls(directory=directory, shards=shards, **fields)
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: malformed manifest ({exc}); rebuild the shards") from None


def read_shards(source: str | os.PathLike | Sequence[str | os.PathLike], name: str | None = None) -> SparseDataset:
    """The shards as one SparseDataset, rows in shard order.

    source: a directory with ``shards.json`` (every shard is checked against it: rows, nonzeros,
    width), or shard files in row order, each holding one sparse dataset of the same width.
    name: the dataset's name (default: the shards').
    """
    if isinstance(source, (str, os.PathLike)):
        manifest = ShardedDataset.read(source)
        parts = [_read_one(path) for path in manifest.paths]
        for shard, path, part in zip(manifest.shards, manifest.paths, parts):
            if (part.n_examples, part.nnz, part.n_features) != (shard.rows, shard.nnz, manifest.n_columns):
                raise DataError(f"{path}: holds {part.n_examples} rows, {part.nnz} nonzeros and {part.n_features} "
                                f"columns, but {MANIFEST} says {shard.rows}, {shard.nnz} and {manifest.n_columns}; "
                                "a shard was replaced or truncated: rebuild the shards")
    else:
        paths = [os.fspath(path) for path in source]
        if not paths:
            raise DataError("read_shards: no shard files given")
        parts = [_read_one(path) for path in paths]
        for path, part in zip(paths, parts):
            if part.dims != parts[0].dims:
                raise DataError(f"{path}: dims {part.dims} differ from {paths[0]}'s {parts[0].dims}; "
                                "shards of one dataset have one width")
    return concatenate(parts, name)


def _read_one(path: str) -> SparseDataset:
    from destiny.data.netcdf import read_netcdf

    datasets = read_netcdf(path)
    if len(datasets) != 1 or not isinstance(datasets[0], SparseDataset):
        raise DataError(f"{path}: a shard holds one sparse dataset; this file holds "
                        f"{', '.join(type(d).__name__ + ' ' + repr(d.name) for d in datasets)}")
    return datasets[0]


def concatenate(parts: Sequence[SparseDataset], name: str | None = None) -> SparseDataset:
    """Sparse datasets of one width stacked row-wise; values (if any) in the narrowest exact
    type of them all (``exact_values``), weights kept when every part has them."""
    first = parts[0]
    if any(p.is_indicator != first.is_indicator for p in parts):
        raise DataError("cannot concatenate indicator shards with valued ones; rebuild the shards from one table")
    counts = np.concatenate([np.diff(p.offsets) for p in parts])
    indices = np.concatenate([p.indices for p in parts])
    values = None if first.is_indicator else exact_values(np.concatenate([p.values for p in parts]))
    weights = None
    if all(p.weights is not None for p in parts):
        weights = np.concatenate([p.weights for p in parts])
    return SparseDataset(name or first.name, first.dims, csr.counts_to_offsets(counts), indices, values,
                         weights=weights, ignore_zero=first.ignore_zero)


def merge_shards(source: str | os.PathLike | Sequence[str | os.PathLike], path: str | os.PathLike,
                 names: str | Sequence[str] | None = None) -> SparseDataset:
    """Write the shards as one DSSTNE file (atomically) and return the dataset.

    names: the DataSet name(s) to store the data under, e.g. ``("input", "output")`` for an
    autoencoder, whose one file then serves ``destiny train -i data.nc -o data.nc``; default:
    the shards' own name.
    """
    from destiny.data.netcdf_write import write_netcdf

    dataset = read_shards(source)
    names = [dataset.name] if names is None else [names] if isinstance(names, str) else list(names)
    write_netcdf(path, [dataset.replace(name=name) for name in names])
    return dataset


__all__ = ["MANIFEST", "Shard", "ShardedDataset", "concatenate", "merge_shards", "read_shards", "shard_file",
           "shard_of_row"]
