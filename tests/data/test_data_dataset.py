"""SparseDataset and DenseDataset: sizes, dtypes, slicing by example, validation, duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from destiny.data import DenseDataset, SparseDataset, exact_values, index_dtype
from destiny.errors import DataError


def small(values=True):
    # rows: [3, 1], [], [0, 4, 2], [4]
    return SparseDataset("input", (5,), [0, 2, 2, 5, 6], [3, 1, 0, 4, 2, 4],
                         np.float32([1, 2, 3, 4, 5, 6]) if values else None)


def test_sizes_and_dtypes():
    d = small()
    assert (d.n_examples, len(d), d.nnz, d.width, d.n_features) == (4, 4, 6, 5, 5)
    assert d.offsets.dtype == np.int64 and d.indices.dtype == np.int32 and d.values.dtype == np.float32
    assert d.density == pytest.approx(6 / 20) and not d.is_indicator and small(False).is_indicator
    image = SparseDataset("img", (4, 3, 2), [0, 1], [23])
    assert (image.width, image.n_features) == (4, 24)


def test_index_dtype_widens_past_int32():
    assert index_dtype(2**31 - 1) == np.int32 and index_dtype(2**31) == np.int64
    wide = SparseDataset("wide", (2**31 + 5,), [0, 1], [2**31 + 4])
    assert wide.indices.dtype == np.int64 and wide.indices[0] == 2**31 + 4


ROWS = [[3, 1], [], [0, 4, 2], [4]]
VALUES = [[1, 2], [], [3, 4, 5], [6]]


@pytest.mark.parametrize("key, selected", [
    (2, [2]),
    (-1, [3]),
    (slice(1, 3), [1, 2]),
    (slice(None, None, 2), [0, 2]),
    (np.array([3, 0, 3]), [3, 0, 3]),
    (np.array([True, False, False, True]), [0, 3]),
])
def test_slicing_by_example(key, selected):
    part = small()[key]
    assert [part.row(i)[0].tolist() for i in range(len(part))] == [ROWS[r] for r in selected]
    assert [part.row(i)[1].tolist() for i in range(len(part))] == [VALUES[r] for r in selected]
    assert part.offsets[0] == 0 and part.name == "input" and part.dims == (5,)


def test_slicing_keeps_values_and_weights():
    d = small().replace(weights=np.float32([1, 2, 3, 4]))
    part = d[np.array([2, 0])]
    assert part.values.tolist() == [3, 4, 5, 1, 2] and part.weights.tolist() == [3, 1]
    view = d[1:4]
    assert np.shares_memory(view.indices, d.indices)  # a basic slice is a view
    with pytest.raises(IndexError):
        d[4]


def test_validate_names_the_example_and_feature():
    with pytest.raises(DataError, match="dataset 'input': example 2 has feature index 7, outside 0..4"):
        SparseDataset("input", (5,), [0, 2, 2, 5], np.int32([3, 1, 0, 7, 2])).validate()
    with pytest.raises(DataError, match="example 1 has feature index -1"):
        SparseDataset("input", (5,), [0, 1, 2], np.int64([0, -1]))  # narrowing to int32 checks first
    with pytest.raises(DataError, match="offsets decrease at example 1 \\(2 → 1\\)"):
        SparseDataset("input", (5,), [0, 2, 1, 3], [0, 1, 2]).validate()
    with pytest.raises(DataError, match="example 1 has value inf for feature 2; values must be finite"):
        SparseDataset("input", (5,), [0, 1, 2], [0, 2], np.float32([1, np.inf])).validate()
    with pytest.raises(DataError, match="example 0 lists feature 1 more than once"):
        SparseDataset("input", (5,), [0, 3], [1, 2, 1]).validate()
    with pytest.raises(DataError, match="indices for offsets ending at 3"):
        SparseDataset("input", (5,), [0, 3], [1, 2])
    with pytest.raises(DataError, match="dims"):
        SparseDataset("input", (5, 0), [0], [])
    assert small().validate() is not None


def test_deduplicate_keeps_order_and_sums_exactly():
    d = SparseDataset("d", (10,), [0, 5, 7], [4, 1, 4, 9, 4, 2, 2], np.float32([1e8, 1, 1, 3, 1, 5, 6]))
    merged, removed = d.deduplicate()
    assert removed == 3 and merged.offsets.tolist() == [0, 3, 4] and merged.indices.tolist() == [4, 1, 9, 2]
    assert merged.values.tolist() == [100000002, 1, 3, 11] and merged.values.dtype == np.int32  # 1e8 + 2: not float32
    indicator, removed = d.replace(values=None).deduplicate()
    assert removed == 3 and indicator.indices.tolist() == [4, 1, 9, 2]
    original = small()
    same, removed = original.deduplicate()
    assert removed == 0 and same is original


def test_deduplicate_across_chunk_boundaries(monkeypatch):
    from destiny.data import csr

    monkeypatch.setattr(csr, "CHUNK", 4)
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=50)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    indices = rng.integers(0, 6, size=offsets[-1])
    merged, removed = SparseDataset("d", (6,), offsets, indices).deduplicate()
    expected = [list(dict.fromkeys(indices[a:b].tolist())) for a, b in zip(offsets[:-1], offsets[1:])]
    assert [merged.row(i)[0].tolist() for i in range(50)] == expected
    assert removed == len(indices) - sum(map(len, expected))


def test_exact_values_rule():
    assert exact_values(np.float64([5, 3.5])).dtype == np.float32
    assert exact_values(np.float64([1112486027])).dtype == np.int32
    assert exact_values(np.float64([2**40 + 1])).dtype == np.int64
    assert exact_values(np.float64([0.1])).dtype == np.float64
    assert exact_values(np.int64([7, 2**24])).dtype == np.float32
    assert exact_values(np.int64([2**24 + 1])).dtype == np.int32


def test_scipy_methods_delegate():
    matrix = small().to_scipy()
    assert matrix.shape == (4, 5) and matrix.dtype == np.float32
    assert matrix[2].toarray().tolist() == [[3, 0, 5, 0, 4]]
    back = SparseDataset.from_scipy(matrix, name="input")
    assert back.indices.tolist() == small().indices.tolist()


def test_dense_dataset_layout_and_slicing():
    data = np.arange(3 * 2 * 2 * 4, dtype=np.uint8).reshape(3, 16)  # flat rows are reshaped
    images = DenseDataset("img", (4, 2, 2), data)
    assert images.data.shape == (3, 2, 2, 4) and images.width == 4 and images.n_features == 16
    assert images[1:].n_examples == 2 and images[np.array([2])].data[0, 0, 0, 0] == 32
    assert images.nnz == 47
    with pytest.raises(DataError, match="does not fit dims"):
        DenseDataset("img", (4, 2, 2), np.zeros((3, 5)))
    with pytest.raises(DataError, match="example 1 has a value that is not finite"):
        DenseDataset("x", (2,), np.float32([[0, 1], [np.nan, 0]])).validate()
