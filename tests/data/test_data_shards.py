"""Datasets in shards (destiny.data.shards): the row split, reading shards back as one dataset,
merging them into one DSSTNE file, and the manifest's checks. Spark writes such shards
(tests/spark); these tests write them by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from destiny.data import SparseDataset, read_netcdf, write_netcdf
from destiny.data.shards import Shard, ShardedDataset, merge_shards, read_shards, shard_file, shard_of_row
from destiny.errors import DataError
from destiny.parallel.shards import shard_bounds


@pytest.mark.parametrize("n, shards", [(1, 1), (7, 3), (10, 10), (101, 4), (5, 2)])
def test_shard_of_row_follows_shard_bounds(n, shards):
    rows = np.arange(n)
    owner = shard_of_row(rows, n, shards)
    for s in range(shards):
        lo, hi = shard_bounds(n, shards, s)
        assert np.array_equal(rows[owner == s], np.arange(lo, hi))


def _whole(values: bool) -> SparseDataset:
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 6, size=11)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate([np.sort(rng.choice(30, size=c, replace=False)) for c in counts])
    vals = rng.integers(1, 6, size=len(indices)).astype(np.float32) / 2 if values else None
    return SparseDataset("input", (30,), offsets, indices, vals)


def _write_shards(directory, whole: SparseDataset, shards: int) -> ShardedDataset:
    parts = []
    for s in range(shards):
        lo, hi = shard_bounds(whole.n_examples, shards, s)
        part = whole[lo:hi]
        write_netcdf(directory / shard_file("input", s, shards), part)
        parts.append(Shard(shard_file("input", s, shards), lo, hi - lo, part.nnz))
    manifest = ShardedDataset(str(directory), "input", whole.n_examples, whole.n_features, whole.nnz, tuple(parts))
    manifest.write_manifest()
    return manifest


@pytest.mark.parametrize("values", [False, True])
def test_shards_read_and_merge_as_the_whole_dataset(tmp_path, values):
    whole = _whole(values)
    manifest = _write_shards(tmp_path, whole, 3)
    assert ShardedDataset.read(tmp_path) == manifest
    for got in (read_shards(tmp_path), read_shards(manifest.paths)):
        assert np.array_equal(got.offsets, whole.offsets) and np.array_equal(got.indices, whole.indices)
        assert got.is_indicator == (not values) and (not values or np.array_equal(got.values, whole.values))
    merge_shards(tmp_path, tmp_path / "data.nc", names=("input", "output"))
    datasets = {d.name: d for d in read_netcdf(tmp_path / "data.nc")}
    assert set(datasets) == {"input", "output"}
    for d in datasets.values():
        assert np.array_equal(d.offsets, whole.offsets) and np.array_equal(d.indices, whole.indices)


def test_shards_checked_against_the_manifest(tmp_path):
    whole = _whole(False)
    manifest = _write_shards(tmp_path, whole, 2)
    write_netcdf(tmp_path / manifest.shards[1].file, whole[5:8])  # a shard replaced by other rows
    with pytest.raises(DataError, match=r"input-00001-of-00002.nc: holds 3 rows.*shards.json says"):
        read_shards(tmp_path)
    with pytest.raises(DataError, match="no shards.json"):
        read_shards(tmp_path / "missing")
    (tmp_path / "shards.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="not a version 1 'destiny-shards' manifest"):
        read_shards(tmp_path)


def test_shard_files_of_different_widths_are_refused(tmp_path):
    write_netcdf(tmp_path / "a.nc", SparseDataset("input", (4,), [0, 1], [2]))
    write_netcdf(tmp_path / "b.nc", SparseDataset("input", (5,), [0, 1], [3]))
    with pytest.raises(DataError, match=r"b.nc: dims \(5,\) differ"):
        read_shards([tmp_path / "a.nc", tmp_path / "b.nc"])
