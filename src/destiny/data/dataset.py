"""In-memory datasets: ``SparseDataset`` (CSR, nothing but the nonzeros) and ``DenseDataset``.

Both follow DSSTNE's dataset model (reference/dsstne.md §3): a name that network layers refer
to, per-example dimensions ``dims = (width[, height[, length]])``, optional per-example data
weights. Indexing by example (an int, a slice, an integer or Boolean array) returns a new
dataset of the same kind; basic slices share memory with the original, like numpy views.

Values (sparse ``values``) are float32 unless they cannot be held exactly in float32: then
``exact_values`` picks the narrowest exact type — int32, int64, or float64 — so that MovieLens
timestamps (≈1.4e9) survive a text → NetCDF → text trip byte for byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from destiny.data import csr
from destiny.errors import DataError

INT32_LIMIT = 1 << 31
VALUE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64))


def index_dtype(n_features: int) -> np.dtype:
    """int32 while the feature count is below 2^31, else int64."""
    return np.dtype(np.int32) if n_features < INT32_LIMIT else np.dtype(np.int64)


def exact_values(values: np.ndarray) -> np.ndarray:
    """``values`` in the narrowest of float32, int32, int64, float64 that holds each exactly.

    float32 when every value survives the round trip through float32 (ratings, scores); else
    int32 or int64 when every value is an integer (timestamps, counts); else float64.
    """
    values = np.asarray(values)
    if values.dtype == np.float32:
        return values
    if values.dtype.kind in "biu" and values.size and np.abs(values).max() <= (1 << 24):
        return values.astype(np.float32)
    if values.dtype.kind in "iu":
        if values.size == 0:
            return values.astype(np.float32)
        low, high = int(values.min()), int(values.max())
        if -INT32_LIMIT <= low and high < INT32_LIMIT:
            return values.astype(np.int32)
        return values.astype(np.int64) if high < (1 << 63) else values.astype(np.float64)
    values = values.astype(np.float64, copy=False)
    narrow = values.astype(np.float32)
    if np.array_equal(narrow, values):
        return narrow
    del narrow
    if np.all(np.isfinite(values)) and np.array_equal(np.floor(values), values):
        low, high = values.min(), values.max()
        if -INT32_LIMIT <= low and high < INT32_LIMIT:
            return values.astype(np.int32)
        if -(1 << 63) <= low and high < (1 << 63):
            return values.astype(np.int64)
    return values


def _normalise_values(values) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype in VALUE_DTYPES:
        return np.ascontiguousarray(values)
    if values.dtype.kind in "bf" or (values.dtype.kind in "iu" and values.dtype.itemsize <= 2):
        return values.astype(np.float32)
    if values.dtype.kind in "iu":
        return exact_values(values)
    raise DataError(f"values of dtype {values.dtype} are not numbers; give float or integer values")


def _normalise_dims(dims, name: str) -> tuple[int, ...]:
    if isinstance(dims, (int, np.integer)):
        dims = (dims,)
    dims = tuple(int(d) for d in dims)
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise DataError(f"dataset '{name}': dims {dims} must be 1 to 3 positive sizes (width[, height[, length]])")
    return dims


def _example_rows(key, n: int) -> slice | np.ndarray:
    """An example key → a slice with step 1 (a view) or an int64 array of rows."""
    if isinstance(key, (int, np.integer)):
        i = int(key)
        if not -n <= i < n:
            raise IndexError(f"example {i} is out of range for {n} examples")
        i %= n
        return slice(i, i + 1)
    if isinstance(key, slice):
        start, stop, step = key.indices(n)
        return slice(start, max(start, stop)) if step == 1 else np.arange(start, stop, step, dtype=np.int64)
    rows = np.asarray(key)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise IndexError(f"a Boolean mask over examples needs shape ({n},), got {rows.shape}")
        return np.flatnonzero(rows)
    if rows.dtype.kind not in "iu" or rows.ndim != 1:
        raise IndexError("index examples with an int, a slice, or a 1-D integer or Boolean array")
    rows = rows.astype(np.int64)
    if rows.size and (rows.min() < -n or rows.max() >= n):
        raise IndexError(f"example indices must lie in [{-n}, {n}); got {rows.min()}..{rows.max()}")
    return np.where(rows < 0, rows + n, rows)


@dataclass(eq=False, repr=False)
class SparseDataset:
    """Examples × features in CSR form: only the nonzeros are stored.

    ``offsets`` (n_examples + 1,) int64, ``offsets[0] == 0``: example i owns entries
    ``offsets[i]:offsets[i+1]``. ``indices`` (nnz,) int32 (int64 when n_features ≥ 2^31): feature
    of each entry, in the order given (never sorted: DSSTNE keeps file order). ``values`` (nnz,)
    or None for an indicator (Boolean) dataset whose every listed feature is 1. ``weights``
    (n_examples,) float32: DSSTNE's per-example ``dataWeight``. ``ignore_zero``: DSSTNE's
    SparseIgnoreZero — unlisted targets are unknown, not 0.

    Duplicates: a feature listed twice in one example is legal here, as in DSSTNE, but every
    reader merges them (``deduplicate``: indicator keeps one entry, analog sums the values) with
    a DataWarning, and ``validate()`` rejects them.
    """

    name: str
    dims: tuple[int, ...]
    offsets: np.ndarray
    indices: np.ndarray
    values: np.ndarray | None = None
    weights: np.ndarray | None = None
    ignore_zero: bool = False

    def __post_init__(self) -> None:
        self.name = str(self.name)
        self.dims = _normalise_dims(self.dims, self.name)
        self.offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        indices = np.asarray(self.indices)
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0:
            raise DataError(f"dataset '{self.name}': offsets must be 1-D, start at 0 and have n_examples + 1 entries")
        if indices.ndim != 1 or len(indices) != self.offsets[-1]:
            raise DataError(f"dataset '{self.name}': {indices.shape} indices for offsets ending at "
                            f"{self.offsets[-1]}; give one index per entry")
        if indices.size == 0:
            indices = indices.astype(np.int64)  # [] arrives as float64
        if indices.dtype.kind not in "iu":
            raise DataError(f"dataset '{self.name}': feature indices must be integers, not {indices.dtype}")
        wanted = index_dtype(self.n_features)
        if indices.dtype != wanted:
            if indices.size and (indices.min() < 0 or indices.max() >= self.n_features):
                self.indices = indices
                self._check_indices()
            indices = indices.astype(wanted)
        self.indices = np.ascontiguousarray(indices)
        if self.values is not None:
            self.values = _normalise_values(self.values)
            if self.values.shape != self.indices.shape:
                raise DataError(f"dataset '{self.name}': {self.values.shape} values for {self.indices.shape} indices")
        if self.weights is not None:
            self.weights = np.ascontiguousarray(self.weights, dtype=np.float32)
            if self.weights.shape != (self.n_examples,):
                raise DataError(f"dataset '{self.name}': {self.weights.shape} weights for {self.n_examples} examples")
        self.ignore_zero = bool(self.ignore_zero)

    # -- sizes ---------------------------------------------------------------------------
    @property
    def n_examples(self) -> int:
        return len(self.offsets) - 1

    @property
    def nnz(self) -> int:
        return int(self.offsets[-1])

    @property
    def width(self) -> int:
        return self.dims[0]

    @property
    def n_features(self) -> int:
        return math.prod(self.dims)

    @property
    def is_indicator(self) -> bool:
        return self.values is None

    @property
    def density(self) -> float:
        cells = self.n_examples * self.n_features
        return self.nnz / cells if cells else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes of the CSR arrays (offsets, indices, values, weights)."""
        return sum(a.nbytes for a in (self.offsets, self.indices, self.values, self.weights) if a is not None)

    def __len__(self) -> int:
        return self.n_examples

    def __repr__(self) -> str:
        kind = "indicator" if self.is_indicator else f"analog {self.values.dtype}"
        return (f"SparseDataset({self.name!r}, dims={self.dims}, examples={self.n_examples:,}, "
                f"nnz={self.nnz:,}, {kind}{', weighted' if self.weights is not None else ''})")

    # -- access ---------------------------------------------------------------------------
    def row(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(indices, values) of example ``i``; values is None for an indicator dataset."""
        rows = _example_rows(i, self.n_examples)
        lo, hi = int(self.offsets[rows.start]), int(self.offsets[rows.start + 1])
        return self.indices[lo:hi], None if self.values is None else self.values[lo:hi]

    def __getitem__(self, key) -> "SparseDataset":
        rows = _example_rows(key, self.n_examples)
        if isinstance(rows, slice):  # views, no copy
            lo, hi = int(self.offsets[rows.start]), int(self.offsets[rows.stop])
            offsets, entries = self.offsets[rows.start:rows.stop + 1] - lo, slice(lo, hi)
            weights = None if self.weights is None else self.weights[rows]
        else:
            offsets, entries = csr.take_rows(self.offsets, rows)
            weights = None if self.weights is None else self.weights[rows]
        return SparseDataset(self.name, self.dims, offsets, self.indices[entries],
                             None if self.values is None else self.values[entries], weights, self.ignore_zero)

    def replace(self, **changes) -> "SparseDataset":
        """A copy of the fields with some replaced (arrays are shared, not copied)."""
        fields = dict(name=self.name, dims=self.dims, offsets=self.offsets, indices=self.indices,
                      values=self.values, weights=self.weights, ignore_zero=self.ignore_zero)
        fields.update(changes)
        return SparseDataset(**fields)

    # -- checks ---------------------------------------------------------------------------
    def validate(self, duplicates: bool = True) -> "SparseDataset":
        """Raise DataError naming the example and feature of the first problem; return self.

        Checks offsets non-decreasing, indices in [0, n_features), values and weights finite
        and, unless ``duplicates=False``, that no example lists a feature twice.
        """
        steps = np.diff(self.offsets)
        if steps.size and steps.min() < 0:
            i = int(np.argmax(steps < 0))
            raise DataError(f"dataset '{self.name}': offsets decrease at example {i} "
                            f"({self.offsets[i]} → {self.offsets[i + 1]}); offsets must be non-decreasing")
        self._check_indices()
        if self.values is not None and self.values.dtype.kind == "f":
            bad = _first_false(np.isfinite(self.values))
            if bad is not None:
                raise DataError(f"dataset '{self.name}': example {csr.row_of(self.offsets, bad)} has value "
                                f"{self.values[bad]} for feature {self.indices[bad]}; values must be finite")
        if self.weights is not None:
            bad = _first_false(np.isfinite(self.weights))
            if bad is not None:
                raise DataError(f"dataset '{self.name}': example {bad} has weight {self.weights[bad]}; "
                                "weights must be finite")
        if duplicates:
            repeats, _ = csr.duplicate_positions(self.offsets, self.indices, self.n_features)
            if len(repeats):
                at = int(repeats.min())
                raise DataError(f"dataset '{self.name}': example {csr.row_of(self.offsets, at)} lists feature "
                                f"{self.indices[at]} more than once ({len(repeats)} repeated entries in all); "
                                "merge them with .deduplicate()")
        return self

    def _check_indices(self) -> None:
        if not self.indices.size:
            return
        low, high = self.indices.min(), self.indices.max()
        if low >= 0 and high < self.n_features:
            return
        bad = int(np.argmax(self.indices < 0)) if low < 0 else int(np.argmax(self.indices >= self.n_features))
        raise DataError(f"dataset '{self.name}': example {csr.row_of(self.offsets, bad)} has feature index "
                        f"{self.indices[bad]}, outside 0..{self.n_features - 1} (dims {self.dims}); "
                        "widen the dataset or fix the index")

    def deduplicate(self) -> tuple["SparseDataset", int]:
        """Merge features listed twice in an example; return (dataset, entries removed).

        Indicator: the first entry is kept. Analog: values are summed into the first entry,
        which is what DSSTNE's gather-sum of an input row computes for a repeated index.
        """
        offsets, indices, values, removed = csr.merge_duplicates(self.offsets, self.indices, self.values,
                                                                  self.n_features)
        if not removed:
            return self, 0
        values = None if values is None else exact_values(values)
        return self.replace(offsets=offsets, indices=indices, values=values), removed

    # -- scipy ----------------------------------------------------------------------------
    def to_scipy(self, dtype=np.float32):
        """scipy.sparse.csr_matrix (n_examples × n_features); indicator entries are 1."""
        from destiny.data.interop import to_scipy

        return to_scipy(self, dtype=dtype)

    @classmethod
    def from_scipy(cls, matrix, name: str = "input", dims: Sequence[int] | None = None,
                   indicator: bool | None = None) -> "SparseDataset":
        """From any scipy.sparse matrix or array; see destiny.data.interop.from_scipy."""
        from destiny.data.interop import from_scipy

        return from_scipy(matrix, name=name, dims=dims, indicator=indicator)


def _first_false(mask: np.ndarray) -> int | None:
    return None if mask.all() else int(np.argmin(mask))


@dataclass(eq=False, repr=False)
class DenseDataset:
    """Examples stored whole: ``data`` (n_examples, *reversed(dims)), DSSTNE's on-disk order.

    dims = (width, height, length) as DSSTNE names them, so an image dataset of width W,
    height H and C channels (length) has data (N, C, H, W): x fastest, then y, then z.
    dtype as stored (uint8 for images, float32 for most else). ``weights`` (n_examples,) float32.
    """

    name: str
    dims: tuple[int, ...]
    data: np.ndarray
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.name = str(self.name)
        self.dims = _normalise_dims(self.dims, self.name)
        data = np.asarray(self.data)
        shape = tuple(reversed(self.dims))
        if data.ndim == 2 and len(self.dims) > 1 and data.shape[1] == math.prod(self.dims):
            data = data.reshape((len(data),) + shape)
        if data.shape[1:] != shape:
            raise DataError(f"dataset '{self.name}': data of shape {data.shape} does not fit dims {self.dims}; "
                            f"expected (examples, {', '.join(map(str, shape))})")
        self.data = data
        if self.weights is not None:
            self.weights = np.ascontiguousarray(self.weights, dtype=np.float32)
            if self.weights.shape != (self.n_examples,):
                raise DataError(f"dataset '{self.name}': {self.weights.shape} weights for {self.n_examples} examples")

    @property
    def n_examples(self) -> int:
        return len(self.data)

    @property
    def width(self) -> int:
        return self.dims[0]

    @property
    def n_features(self) -> int:
        return math.prod(self.dims)

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.data))

    @property
    def density(self) -> float:
        return self.nnz / self.data.size if self.data.size else 0.0

    @property
    def is_indicator(self) -> bool:
        return False

    def __len__(self) -> int:
        return self.n_examples

    def __repr__(self) -> str:
        return f"DenseDataset({self.name!r}, dims={self.dims}, examples={self.n_examples:,}, dtype={self.data.dtype})"

    def __getitem__(self, key) -> "DenseDataset":
        rows = _example_rows(key, self.n_examples)
        weights = None if self.weights is None else self.weights[rows]
        return DenseDataset(self.name, self.dims, self.data[rows], weights)

    def validate(self) -> "DenseDataset":
        """Raise DataError if a value or weight is not finite; return self."""
        if self.data.dtype.kind == "f":
            flat = self.data.reshape(len(self.data), -1)
            bad = _first_false(np.isfinite(flat).all(axis=1))
            if bad is not None:
                raise DataError(f"dataset '{self.name}': example {bad} has a value that is not finite")
        if self.weights is not None and not np.isfinite(self.weights).all():
            raise DataError(f"dataset '{self.name}': example {_first_false(np.isfinite(self.weights))} "
                            "has a weight that is not finite")
        return self


Dataset = Union[SparseDataset, DenseDataset]
