"""scipy.sparse and pandas ⇄ SparseDataset."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from destiny.data import SparseDataset, factorize, from_pandas, from_scipy, to_pandas, to_scipy
from destiny.errors import DataError, DataWarning


def test_scipy_round_trip_keeps_values_and_order():
    d = SparseDataset("input", (6,), [0, 3, 3, 5], [5, 0, 2, 1, 4], np.float32([1.5, 2, 3, 4, 5]))
    matrix = to_scipy(d)
    assert isinstance(matrix, scipy.sparse.csr_matrix) and matrix.shape == (3, 6)
    back = from_scipy(matrix)
    np.testing.assert_array_equal(back.indices, d.indices)  # unsorted rows stay as they were
    np.testing.assert_array_equal(back.values, d.values)
    np.testing.assert_array_equal(back.offsets, d.offsets)


def test_from_scipy_drops_zeros_detects_indicators_and_merges():
    ones = scipy.sparse.csr_array(np.array([[0, 1, 1], [1, 0, 0]], dtype=np.float64))
    assert from_scipy(ones).is_indicator
    assert not from_scipy(ones, indicator=False).is_indicator
    coo = scipy.sparse.coo_matrix(([2.0, 3.0, 0.0, 1.0], ([0, 0, 1, 1], [1, 1, 2, 0])), shape=(2, 3))
    with pytest.warns(DataWarning, match="merged 1 repeated"):
        merged = from_scipy(_unsummed(coo))
    assert merged.row(0)[1].tolist() == [5.0] and merged.row(1)[0].tolist() == [0]  # the stored 0 is dropped
    stored = scipy.sparse.csr_matrix((np.array([0.0, 2.0]), np.array([0, 1]), np.array([0, 2])), shape=(1, 2))
    assert from_scipy(stored).nnz == 1 and stored.nnz == 2  # the caller's matrix is left alone
    with pytest.raises(DataError, match="needs a scipy.sparse matrix"):
        from_scipy(np.eye(2))


def _unsummed(coo):
    """A CSR that still holds the repeated (0, 1) entry: scipy sums them unless built by hand."""
    order = np.lexsort((coo.col, coo.row))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(coo.row, minlength=coo.shape[0]))])
    return scipy.sparse.csr_matrix((coo.data[order], coo.col[order], indptr), shape=coo.shape)


def test_factorize_first_appearance_and_known_labels():
    codes, names = factorize(np.array([30, 10, 30, 20]))
    assert codes.tolist() == [0, 1, 0, 2] and names.tolist() == [30, 10, 20]
    codes, names = factorize(np.array([30, 40, 10]), known={"10": 0, "20": 5})  # index files hold text
    assert codes.tolist() == [6, 7, 0] and names.tolist() == ["10", None, None, None, None, "20", 30, 40]


def test_pandas_round_trip():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"user": ["u2", "u1", "u2", "u3"], "item": ["b", "a", "a", "c"],
                          "rating": [4.0, 3.5, 5.0, 1.0]})
    dataset, users, items = from_pandas(frame, "user", "item", "rating")
    assert users.tolist() == ["u2", "u1", "u3"] and items.tolist() == ["b", "a", "c"]
    assert [dataset.row(i)[0].tolist() for i in range(3)] == [[0, 1], [1], [2]]
    assert dataset.values.tolist() == [4.0, 5.0, 3.5, 1.0]
    back = to_pandas(dataset, users, items, value_col="rating")
    pd.testing.assert_frame_equal(back.sort_values(["user", "item"]).reset_index(drop=True),
                                  frame.sort_values(["user", "item"]).reset_index(drop=True), check_dtype=False)
    indicator, _, _ = from_pandas(frame, "user", "item")
    assert indicator.is_indicator and list(to_pandas(indicator).columns) == ["user", "item"]
    with pytest.raises(DataError, match="the DataFrame has no column 'movie'"):
        from_pandas(frame, "user", "movie")
