"""SparseDataset ⇄ scipy.sparse and pandas, and interactions (user, item[, value]) → dataset.

Rows are users and columns items. Labels are numbered in first-appearance order (DSSTNE's
rule for new labels) unless an existing {label: index} mapping is given. pandas is imported
only by the pandas functions: it is an optional dependency (``pip install destiny[pandas]``).
"""

from __future__ import annotations

import warnings
from itertools import repeat
from typing import Mapping, Sequence

import numpy as np

from destiny.data import csr
from destiny.data.dataset import SparseDataset, exact_values
from destiny.errors import DataError, DataWarning


def to_scipy(dataset: SparseDataset, dtype=np.float32):
    """scipy.sparse.csr_matrix (n_examples × n_features) of ``dtype``; indicator entries are 1.

    Entry order within a row is kept (scipy's ``has_sorted_indices`` may be False)."""
    import scipy.sparse

    if dataset.values is None:
        data = np.ones(dataset.nnz, dtype=dtype)
    else:
        data = dataset.values.astype(dtype, copy=False)
    return scipy.sparse.csr_matrix((data, dataset.indices, dataset.offsets),
                                   shape=(dataset.n_examples, dataset.n_features))


def from_scipy(matrix, name: str = "input", dims: Sequence[int] | None = None,
               indicator: bool | None = None) -> SparseDataset:
    """A SparseDataset from any scipy.sparse matrix or array (rows = examples).

    Stored zeros are dropped (nothing but the nonzeros is kept) and repeated entries merged by
    summing, with a DataWarning. ``indicator``: None makes the dataset an indicator when every
    stored value is 1, True drops the values, False keeps them. ``dims`` defaults to (columns,).
    """
    import scipy.sparse

    if not scipy.sparse.issparse(matrix):
        raise DataError(f"from_scipy needs a scipy.sparse matrix, not {type(matrix).__name__}")
    matrix = scipy.sparse.csr_matrix(matrix)  # may share the caller's arrays: never modify them in place
    if np.any(matrix.data == 0):
        matrix = matrix.copy()
        matrix.eliminate_zeros()
    values = matrix.data
    if indicator is None:
        indicator = bool(np.all(values == 1))
    dims = (matrix.shape[1],) if dims is None else tuple(dims)
    if int(np.prod(dims)) != matrix.shape[1]:
        raise DataError(f"dims {dims} hold {int(np.prod(dims))} features but the matrix has {matrix.shape[1]} columns")
    dataset = SparseDataset(name, dims, matrix.indptr.astype(np.int64), matrix.indices,
                            None if indicator else exact_values(values))
    return _merged(dataset, "the scipy matrix")


def _merged(dataset: SparseDataset, source: str) -> SparseDataset:
    dataset, removed = dataset.deduplicate()
    if removed:
        how = "one entry kept" if dataset.is_indicator else "values summed"
        warnings.warn(f"{source}: merged {removed:,} repeated (row, column) entries ({how})", DataWarning, stacklevel=3)
    return dataset


def factorize(labels, known: Mapping | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(codes, names): ``codes[i]`` (int64) is the index of ``labels[i]`` and ``names[c]`` the
    label of index c. New labels are numbered in order of first appearance, after the indices of
    ``known`` ({label: index}, e.g. a DSSTNE index file, whose str labels also match numbers).

    Vectorised (one sort): about 2 s for 20M integer labels; Python work only a distinct label.
    """
    labels = np.asarray(labels)
    if labels.dtype == object:
        labels = labels.astype(str)
    uniques, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    codes_of_unique = np.full(len(uniques), -1, dtype=np.int64)
    start = 0
    if known:
        as_text = all(isinstance(k, str) for k in known) and labels.dtype.kind != "U"
        keys = map(str, uniques.tolist()) if as_text else uniques.tolist()
        codes_of_unique = np.fromiter(map(known.get, keys, repeat(-1)), dtype=np.int64, count=len(uniques))
        start = max(known.values()) + 1
    new = np.flatnonzero(codes_of_unique < 0)
    new = new[np.argsort(first[new], kind="stable")]  # first-appearance order
    codes_of_unique[new] = start + np.arange(len(new))
    if not known:
        return codes_of_unique[inverse], uniques[new]
    names = np.full(start + len(new), None, dtype=object)
    for label, code in known.items():
        names[code] = label
    names[start:] = uniques[new].tolist()
    return codes_of_unique[inverse], names


def interactions_to_dataset(rows: np.ndarray, cols: np.ndarray, values: np.ndarray | None, n_rows: int,
                            n_cols: int, name: str = "input", source: str = "interactions") -> SparseDataset:
    """CSR from (row, column[, value]) triples; entries keep their input order within a row.

    Repeated (row, column) pairs are merged with a DataWarning (values summed).
    """
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    offsets = csr.counts_to_offsets(np.bincount(rows, minlength=n_rows))
    indices = np.asarray(cols)[order]
    values = None if values is None else exact_values(np.asarray(values)[order])
    return _merged(SparseDataset(name, (n_cols,), offsets, indices, values), source)


def from_pandas(frame, user_col: str, item_col: str, value_col: str | None = None, *, name: str = "input",
                users: Mapping | None = None, items: Mapping | None = None):
    """(dataset, user_labels, item_labels) from a DataFrame of (user, item[, value]) rows.

    Row r of the dataset is user ``user_labels[r]``, column c item ``item_labels[c]``; labels
    are numbered in first-appearance order after those of ``users``/``items`` if given.
    """
    for column in (user_col, item_col) + ((value_col,) if value_col else ()):
        if column not in frame.columns:
            raise DataError(f"the DataFrame has no column '{column}'; it has {', '.join(map(str, frame.columns))}")
    user_codes, user_labels = factorize(frame[user_col].to_numpy(), users)
    item_codes, item_labels = factorize(frame[item_col].to_numpy(), items)
    values = None
    if value_col is not None:
        values = frame[value_col].to_numpy()
        if values.dtype.kind not in "iufb":
            raise DataError(f"column '{value_col}' holds {values.dtype}, not numbers")
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            at = int(np.argmin(np.isfinite(values)))
            raise DataError(f"column '{value_col}' row {at} holds {values[at]}; values must be finite")
    dataset = interactions_to_dataset(user_codes, item_codes, values, len(user_labels), len(item_labels), name,
                                      "the DataFrame")
    return dataset, user_labels, item_labels


def to_pandas(dataset: SparseDataset, user_labels: Sequence | None = None, item_labels: Sequence | None = None, *,
              user_col: str = "user", item_col: str = "item", value_col: str = "value"):
    """A DataFrame with one (user, item[, value]) row per entry, in dataset order.

    Labels default to the row and feature numbers; indicator datasets have no value column.
    """
    import pandas as pd

    rows = np.repeat(np.arange(dataset.n_examples), np.diff(dataset.offsets))
    users = rows if user_labels is None else np.asarray(user_labels)[rows]
    items = dataset.indices if item_labels is None else np.asarray(item_labels)[dataset.indices]
    columns = {user_col: users, item_col: items}
    if dataset.values is not None:
        columns[value_col] = dataset.values
    return pd.DataFrame(columns)
