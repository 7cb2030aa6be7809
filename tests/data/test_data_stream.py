"""StreamingSparseDataset: any rows read from the file equal the same rows of read_netcdf's
dataset (indices, values and their types, weights, repeats merged); sizes and budgets parse;
bad files and bad budgets are errors that say how to fix them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from destiny.data import SparseDataset, read_dataset, write_netcdf
from destiny.data.budget import memory_budget, parse_bytes
from destiny.data.loading import choose_loading
from destiny.data.stream import StreamingSparseDataset, _segments, open_files
from destiny.errors import DataError, DataWarning, UsageError


def random_rows(n: int, features: int, seed: int, most: int = 30, repeats: bool = False):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, most, n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if repeats:
        indices = rng.integers(0, features, offsets[-1])
    else:
        indices = np.concatenate([rng.choice(features, c, replace=False) for c in counts])
    return rng, offsets, indices


def write_analog(path, n=400, features=250, seed=0, repeats=False, values=np.float64):
    rng, offsets, indices = random_rows(n, features, seed, repeats=repeats)
    data = SparseDataset("input", (features,), offsets, indices, rng.uniform(-2, 2, offsets[-1]).astype(values),
                         weights=rng.uniform(0.5, 2, n).astype(np.float32), ignore_zero=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        write_netcdf(path, [data])
        return read_dataset(path, "input")


def same(a: SparseDataset, b: SparseDataset) -> None:
    assert np.array_equal(a.offsets, b.offsets)
    assert a.indices.dtype == b.indices.dtype and np.array_equal(a.indices, b.indices)
    assert (a.values is None) == (b.values is None)
    if a.values is not None:
        assert a.values.dtype == b.values.dtype and np.array_equal(a.values, b.values)
    assert (a.weights is None) == (b.weights is None)
    if a.weights is not None:
        assert np.array_equal(a.weights, b.weights)
    assert (a.name, a.dims, a.ignore_zero) == (b.name, b.dims, b.ignore_zero)


@pytest.mark.parametrize("values", [np.float32, np.float64])
def test_rows_in_any_order_equal_read_netcdf(tmp_path, values):
    memory = write_analog(tmp_path / "a.nc", values=values)
    rng = np.random.default_rng(1)
    with StreamingSparseDataset(tmp_path / "a.nc", budget="40KB") as stream:
        assert (stream.n_examples, stream.nnz, stream.dims, stream.n_features) == \
            (memory.n_examples, memory.nnz, memory.dims, memory.n_features)
        assert np.array_equal(stream.lengths, np.diff(memory.offsets))
        for examples in (np.arange(memory.n_examples), rng.permutation(memory.n_examples)[:77],
                         np.array([5, 5, 0, 399]), np.zeros(0, np.int64)):
            same(stream.read_rows(examples), memory[examples])
        same(stream.to_memory(), memory)


def test_repeated_features_are_merged_as_read_netcdf_merges_them(tmp_path):
    memory = write_analog(tmp_path / "r.nc", repeats=True)
    with pytest.warns(DataWarning, match="merged"):
        stream = StreamingSparseDataset(tmp_path / "r.nc", budget="1MB")
    assert stream.has_duplicates and np.array_equal(stream.lengths, np.diff(memory.offsets))
    order = np.random.default_rng(2).permutation(memory.n_examples)
    same(stream.read_rows(order), memory[order])
    stream.close()
    unchecked = StreamingSparseDataset(tmp_path / "r.nc", budget="1MB", check=False)
    with pytest.raises(DataError, match="check=True"):
        unchecked.read_rows(np.arange(50))
    unchecked.close()


def test_indicator_dataset_and_dataset_choice(tmp_path):
    _, offsets, indices = random_rows(100, 64, seed=3)
    write_netcdf(tmp_path / "two.nc", [SparseDataset("in", (64,), offsets, indices),
                                       SparseDataset("out", (64,), offsets, indices)])
    with pytest.raises(DataError, match="holds 2 sparse datasets"):
        StreamingSparseDataset(tmp_path / "two.nc")
    with pytest.raises(DataError, match="no dataset named 'x'"):
        StreamingSparseDataset(tmp_path / "two.nc", "x")
    opened = open_files([tmp_path / "two.nc", tmp_path / "two.nc"], budget=10**6)
    assert sorted(opened) == ["in", "out"] and all(d.is_indicator for d in opened.values())
    assert sum(d.budget for d in opened.values()) <= 10**6
    same(opened["out"].read_rows(np.arange(100)[::-1]), read_dataset(tmp_path / "two.nc", "out")[::-1])
    for d in opened.values():
        d.close()


def test_the_ledger_counts_what_is_held(tmp_path):
    write_analog(tmp_path / "a.nc", n=2000)
    with StreamingSparseDataset(tmp_path / "a.nc", budget="100KB") as stream:
        assert stream.ledger.current == stream.fixed_bytes == 2000 * (8 + 8 + 4)
        stream.read_rows(np.arange(0, 2000, 7))
        assert stream.ledger.current == stream.fixed_bytes  # a read gives back what it held
        assert stream.ledger.peak > stream.fixed_bytes


def test_segments_merge_near_ranges_and_cap_their_length():
    starts = np.array([0, 10, 20, 5000, 5010, 9000])
    ends = np.array([10, 20, 30, 5010, 5020, 9500])
    assert list(_segments(starts, ends, gap=100, most=1000)) == [(0, 3, 0, 30), (3, 5, 5000, 5020), (5, 6, 9000, 9500)]
    assert list(_segments(starts, ends, gap=10**6, most=15)) == [(0, 1, 0, 10), (1, 2, 10, 20), (2, 3, 20, 30),
                                                               (3, 4, 5000, 5010), (4, 5, 5010, 5020),
                                                               (5, 6, 9000, 9500)]  # a long range alone


def test_sizes_and_budgets_parse(monkeypatch):
    assert parse_bytes("2GB") == 2 * 10**9 and parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1.5g") == 1_500_000_000 and parse_bytes("100000") == 100000 and parse_bytes(7) == 7
    for bad in ("lots", "-1GB", "0", "2 parsecs"):
        with pytest.raises(UsageError, match="memory-budget"):
            parse_bytes(bad)
    monkeypatch.setenv("DESTINY_MEMORY_BUDGET", "3MB")
    assert memory_budget() == 3 * 10**6 and memory_budget("1KB") == 1000
    monkeypatch.setenv("DESTINY_MEMORY_BUDGET", "nonsense")
    with pytest.raises(UsageError, match="DESTINY_MEMORY_BUDGET"):
        memory_budget()
    monkeypatch.delenv("DESTINY_MEMORY_BUDGET")
    assert memory_budget() > 0


def test_loading_streams_past_the_budget_or_when_asked(tmp_path):
    memory = write_analog(tmp_path / "a.nc")
    assert 50_000 < memory.nbytes < 100_000
    assert choose_loading([tmp_path / "a.nc"], budget="100KB").stream is False
    loading = choose_loading([tmp_path / "a.nc", tmp_path / "a.nc"], budget="50KB")
    assert loading.stream and "more than the memory budget" in loading.describe()
    assert choose_loading([tmp_path / "a.nc"], stream=True, budget="1GB").stream
    assert not choose_loading([tmp_path / "a.nc"], stream=False, budget="1KB").stream


def test_a_budget_too_small_for_two_batches_says_what_to_give(tmp_path):
    from destiny.train.streaming import StreamingRows

    write_analog(tmp_path / "a.nc", n=2000)
    with StreamingSparseDataset(tmp_path / "a.nc", budget="45KB") as stream:
        rows = StreamingRows(stream)
        with pytest.raises(UsageError, match="raise --memory-budget .* or use a smaller batch"):
            rows.plan(np.arange(2000), 1000)
