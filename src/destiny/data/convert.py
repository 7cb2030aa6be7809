"""Ratings files (MovieLens ``ratings.csv``, ``u.data``, ``ratings.dat``, any user,item[,rating
[,timestamp]] table) → interactions → seeded train/test splits → SparseDataset.

Splits are deterministic given the seed (numpy ``Generator(PCG64(seed))``) and disjoint:
* ``random``: a uniformly random ``test_fraction`` of all interactions (exact count).
* ``user``: each user's interactions split separately, round(test_fraction · n_user) to test.
* ``time``: each user's latest round(test_fraction · n_user) interactions to test ("leave latest
  out"; ties broken at random), which needs timestamps. A global time cutoff is not offered:
  it leaves most users without test items.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

import numpy as np

from destiny.data import csr
from destiny.data.dataset import SparseDataset
from destiny.data.interop import factorize, interactions_to_dataset
from destiny.errors import DataError
from destiny.io.inputs import open_input, open_text_input

FORMATS = ("auto", "movielens-csv", "udata", "dat", "csv")
SPLITS = ("random", "user", "time")
VALUES = ("none", "rating", "timestamp")
COLUMNS = ("user", "item", "rating", "timestamp")


@dataclass
class Interactions:
    """(n,) arrays: user and item labels (int64 or str), ratings (float64), timestamps (int64)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, mask: np.ndarray) -> "Interactions":
        return Interactions(self.users[mask], self.items[mask],
                            None if self.ratings is None else self.ratings[mask],
                            None if self.timestamps is None else self.timestamps[mask])


def _sniff(path: str, fmt: str, delimiter: str | None, header: bool | None) -> tuple[str, str, bool]:
    base = os.path.basename(path).lower()
    if fmt == "auto":
        fmt = ("movielens-csv" if base == "ratings.csv" else "dat" if base == "ratings.dat"
               else "udata" if base == "u.data" or base.endswith((".base", ".test")) else "csv")
    defaults = {"movielens-csv": (",", True), "udata": ("\t", False), "dat": ("::", False)}
    if fmt in defaults:
        default_delimiter, default_header = defaults[fmt]
        return fmt, delimiter or default_delimiter, default_header if header is None else header
    with open_text_input(path) as stream:
        head = stream.read(1 << 16).decode("utf-8", "replace").splitlines()[:2]
    if not head:
        raise DataError(f"{path}: the file is empty")
    if delimiter is None:
        delimiter = next((d for d in ("::", "\t", ",", ";", "|", " ") if d in head[0]), None)
        if delimiter is None:
            raise DataError(f"{path}: cannot tell the delimiter of '{head[0][:60]}'; give --delimiter")
    if header is None:
        first = head[0].split(delimiter)
        header = not all(_is_number(x) for x in first[2:4]) or not any(_is_number(x) for x in first[:2])
    return fmt, delimiter, header


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_interactions(path: str | os.PathLike, *, format: str = "auto", delimiter: str | None = None,
                      header: bool | None = None, columns: dict[str, str | int] | None = None) -> Interactions:
    """Read a ratings table. Formats: "movielens-csv" (``ratings.csv``: header
    userId,movieId,rating,timestamp), "udata" (``u.data``: TAB, no header), "dat" (``ratings.dat``:
    ``::``, no header), "csv" (any delimiter, header sniffed), or "auto" from the file name.

    ``columns`` maps "user", "item", "rating", "timestamp" to a header name or a 0-based
    position (default 0, 1, 2, 3; rating and timestamp are optional). A bad row is a DataError
    with file and line.
    """
    path = os.fspath(path)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
    format, delimiter, header = _sniff(path, format, delimiter, header)
    with open_input(path) as stream:
        data = stream.read()
    if delimiter == "::":  # loadtxt and csv take one-character delimiters
        data, delimiter = data.replace(b"::", b"\x1f"), "\x1f"
    text = data.decode("utf-8-sig", "surrogateescape")
    del data
    skip = 1 if header else 0
    head = [next(csv.reader([line.rstrip("\r")], delimiter=delimiter)) for line in text.split("\n", 2)[:2]]
    if len(head) <= skip or not head[skip]:
        raise DataError(f"{path}: no data rows")
    positions = _positions(path, columns, head[0] if header else None, len(head[skip]))
    try:  # fast path: numeric ids, numpy's C parser
        table = np.loadtxt(io.StringIO(text), delimiter=delimiter, skiprows=skip, usecols=list(positions.values()),
                           dtype=np.float64, ndmin=2, comments=None)
        return _numeric(table, positions, path)
    except ValueError:
        return _textual(text, delimiter, skip, positions, path)


def _positions(path: str, columns: dict | None, names: list[str] | None, n_fields: int) -> dict[str, int]:
    wanted = dict(zip(COLUMNS, range(4))) if columns is None else dict(columns)
    if "user" not in wanted or "item" not in wanted:
        raise DataError(f"{path}: name the user and item columns")
    positions = {}
    for role in COLUMNS:
        if role not in wanted:
            continue
        column = wanted[role]
        if isinstance(column, str) and not column.isdigit():
            if names is None or column not in names:
                raise DataError(f"{path}: no column named '{column}' for the {role}; the header has "
                                f"{', '.join(names) if names else 'no names (the file has no header)'}")
            column = names.index(column)
        positions[role] = int(column)
    if columns is None:  # rating and timestamp only where the table has them
        positions = {role: p for role, p in positions.items() if p < max(n_fields, 2)}
    return positions


def _numeric(table: np.ndarray, positions: dict[str, int], path: str) -> Interactions:
    got = dict(zip(positions, table.T))
    for role in ("user", "item", "timestamp"):
        if role in got and not np.array_equal(np.floor(got[role]), got[role]):
            raise ValueError("not integers")  # let the textual path keep them as labels or fail
    if "rating" in got and not np.isfinite(got["rating"]).all():
        raise ValueError("not finite")
    return Interactions(got["user"].astype(np.int64), got["item"].astype(np.int64), got.get("rating"),
                        None if "timestamp" not in got else got["timestamp"].astype(np.int64))


def _textual(text: str, delimiter: str, skip: int, positions: dict[str, int], path: str) -> Interactions:
    width = max(positions.values()) + 1
    cols: dict[str, list[str]] = {role: [] for role in positions}
    linenos: list[int] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if lineno <= skip or not line.strip():
            continue
        row = next(csv.reader([line], delimiter=delimiter))
        if len(row) < width:
            raise DataError(f"{path}:{lineno}: {len(row)} fields, expected at least {width} "
                            f"({', '.join(positions)}) separated by {delimiter!r}")
        for role, position in positions.items():
            cols[role].append(row[position].strip())
        linenos.append(lineno)
    if not linenos:
        raise DataError(f"{path}: no data rows")
    users, items = _labels(cols["user"]), _labels(cols["item"])
    ratings = _numbers(cols, "rating", path, linenos, np.float64)
    timestamps = _numbers(cols, "timestamp", path, linenos, np.int64)
    return Interactions(users, items, ratings, timestamps)


def read_text_interactions(path: str | os.PathLike, *, values: str = "none") -> Interactions:
    """DSSTNE text (``sample<TAB>feature[,value]:...``, a file or a directory of them) as
    interactions: each datapoint is one (sample, feature) pair, labels as in the text. values:
    "none" ignores the text's values (indicator); "rating" reads them as ratings, "timestamp" as
    integer timestamps (DSSTNE's MovieLens sample stores timestamps)."""
    from destiny.data.text import read_text

    if values not in VALUES:
        raise ValueError(f"values must be one of {VALUES}, not {values!r}")
    data = read_text(path, analog=values != "none")
    dataset = data.dataset
    samples = _labels([label.decode("utf-8", "surrogateescape") for label in _by_index(data.sample_index)])
    features = _labels([label.decode("utf-8", "surrogateescape") for label in _by_index(data.feature_index)])
    users = np.repeat(samples, np.diff(dataset.offsets))
    items = features[dataset.indices]
    ratings = timestamps = None
    if values == "rating":
        ratings = dataset.values.astype(np.float64)
    elif values == "timestamp":
        timestamps = dataset.values.astype(np.int64)
        if not np.array_equal(timestamps, dataset.values):
            raise DataError(f"{path}: --values timestamp reads the values as integer timestamps, but some are "
                            "fractional; use --values rating")
    return Interactions(users, items, ratings, timestamps)


def _by_index(index: dict[bytes, int]) -> list[bytes]:
    """The labels of a fresh index (numbered 0, 1, … in first-appearance order), by number."""
    labels = [b""] * len(index)
    for label, i in index.items():
        labels[i] = label
    return labels


def _labels(values: list[str]) -> np.ndarray:
    labels = np.array(values, dtype=str)
    try:
        numbers = labels.astype(np.int64)
    except ValueError:
        return labels
    return numbers if np.array_equal(numbers.astype(str), labels) else labels


def _numbers(cols: dict, role: str, path: str, linenos: list[int], dtype) -> np.ndarray | None:
    if role not in cols:
        return None
    out = np.empty(len(cols[role]), dtype=dtype)
    parse = float if dtype == np.float64 else int
    for k, value in enumerate(cols[role]):
        try:
            number = parse(value)
        except ValueError:
            kind = "a number" if parse is float else "an integer"
            raise DataError(f"{path}:{linenos[k]}: {role} '{value[:40]}' is not {kind}") from None
        if not np.isfinite(number):
            raise DataError(f"{path}:{linenos[k]}: {role} '{value}' is not finite")
        out[k] = number
    return out


def keep_ratings(interactions: Interactions, min_rating: float | None) -> Interactions:
    """Interactions rated at least ``min_rating`` (all of them when it is None)."""
    if min_rating is None:
        return interactions
    if interactions.ratings is None:
        raise DataError("a minimum rating needs a rating column; the input has none")
    return interactions.subset(interactions.ratings >= min_rating)


def split_interactions(interactions: Interactions, method: str, test_fraction: float = 0.2,
                       seed: int = 0) -> np.ndarray:
    """(n,) bool: True for interactions that go to the test set (see the module docstring)."""
    if method not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {method!r}")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"the test fraction must lie strictly between 0 and 1, not {test_fraction}")
    rng = np.random.Generator(np.random.PCG64(seed))
    n = len(interactions)
    test = np.zeros(n, dtype=bool)
    if method == "random":
        test[rng.permutation(n)[:int(round(test_fraction * n))]] = True
        return test
    users, _ = factorize(interactions.users)
    key = rng.random(n)
    if method == "time":
        if interactions.timestamps is None:
            raise DataError("a time split needs a timestamp column; the input has none")
        order = np.lexsort((key, -interactions.timestamps, users))  # each user's latest first
    else:
        order = np.lexsort((key, users))
    test[order] = _rank_in_group(users[order]) < _test_counts(users, test_fraction)[users[order]]
    return test


def _rank_in_group(groups: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal (sorted) group ids."""
    start = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    lengths = np.diff(np.concatenate([start, [len(groups)]]))
    return np.arange(len(groups)) - np.repeat(start, lengths)


def _test_counts(groups: np.ndarray, test_fraction: float) -> np.ndarray:
    return np.floor(np.bincount(groups) * test_fraction + 0.5).astype(np.int64)


def split_dataset(dataset: SparseDataset, test_fraction: float = 0.2, seed: int = 0
                  ) -> tuple[SparseDataset, SparseDataset]:
    """(train, test): each example's entries split at random, round(test_fraction · n) to test.

    Both keep all examples (rows line up) and the entry order; deterministic given the seed.
    Works in chunks of about a million entries, so memory stays a small multiple of the CSR.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"the test fraction must lie strictly between 0 and 1, not {test_fraction}")
    rng = np.random.Generator(np.random.PCG64(seed))
    test = np.zeros(dataset.nnz, dtype=bool)
    for first, stop in csr.chunks(dataset.offsets):
        lo, hi = int(dataset.offsets[first]), int(dataset.offsets[stop])
        counts = np.diff(dataset.offsets[first:stop + 1])
        rows = np.repeat(np.arange(stop - first), counts)
        order = np.lexsort((rng.random(hi - lo), rows))
        wanted = np.floor(counts * test_fraction + 0.5).astype(np.int64)
        test[lo + order] = _rank_in_group(rows[order]) < wanted[rows[order]]
    return _part(dataset, ~test), _part(dataset, test)


def _part(dataset: SparseDataset, keep: np.ndarray) -> SparseDataset:
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])  # (nnz + 1,)
    kept_per_row = kept_before[dataset.offsets[1:]] - kept_before[dataset.offsets[:-1]]
    return dataset.replace(offsets=csr.counts_to_offsets(kept_per_row), indices=dataset.indices[keep],
                           values=None if dataset.values is None else dataset.values[keep])


@dataclass
class Converted:
    """Datasets built from interactions with shared user (row) and item (column) numbering."""

    datasets: list[SparseDataset]
    user_labels: np.ndarray  # label of row r
    item_labels: np.ndarray  # label of feature c


def to_datasets(interactions: Interactions, parts: list[np.ndarray] | None = None, *, name: str = "input",
                values: str = "none", width: int | None = None) -> Converted:
    """One SparseDataset per mask in ``parts`` (default: all interactions), rows = users and
    columns = items numbered in first-appearance order over all interactions, so the parts
    line up. ``values``: "none" (indicator), "rating" or "timestamp"."""
    if values not in VALUES:
        raise ValueError(f"values must be one of {VALUES}, not {values!r}")
    source = {"none": None, "rating": interactions.ratings, "timestamp": interactions.timestamps}[values]
    if values != "none" and source is None:
        raise DataError(f"--values {values}: the input has no {values} column")
    users, user_labels = factorize(interactions.users)
    items, item_labels = factorize(interactions.items)
    width = len(item_labels) if width is None else width
    datasets = []
    for mask in parts or [np.ones(len(interactions), dtype=bool)]:
        datasets.append(interactions_to_dataset(users[mask], items[mask], None if source is None else source[mask],
                                                len(user_labels), width, name, "the ratings"))
    return Converted(datasets, user_labels, item_labels)
