"""Labels of a network's columns: index files checked against layer widths, item lists,
DSSTNE filter files, and the first unknown label of a text file for error messages.

Every label is kept as bytes (UTF-8, undecodable bytes as surrogates when shown), exactly as
the index and text readers of ``destiny.data`` hold them, so a recs file repeats the labels
byte for byte.
"""

from __future__ import annotations

import os
import warnings
import numpy as np

from destiny.data.dataset import SparseDataset
from destiny.data.index import ENCODING, read_index_raw, show_label
from destiny.data.layout import round_up_128
from destiny.data.text import input_files, read_text
from destiny.errors import DataError, DataWarning
from destiny.io.inputs import open_text_input


class Index:
    """An index file: ``by_label`` label → column; ``labels[column]`` the label (None: no label),
    built on first use (after ``check_units``, so a stray huge index fails with a message)."""

    def __init__(self, path: str, by_label: dict[bytes, int]):
        self.path, self.by_label = path, by_label
        self.n_columns = max(by_label.values()) + 1 if by_label else 0  # the columns the index reaches
        self._labels: list[bytes | None] | None = None

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Index":
        return cls(os.fspath(path), read_index_raw(path))

    @classmethod
    def from_labels(cls, labels, path: str = "<labels>") -> "Index":
        raw = [lab if isinstance(lab, bytes) else str(lab).encode(*ENCODING) for lab in labels]
        return cls(path, {lab: i for i, lab in enumerate(raw)})

    @property
    def labels(self) -> list[bytes | None]:
        if self._labels is None:
            labels: list[bytes | None] = [None] * self.n_columns
            for label, column in self.by_label.items():
                labels[column] = label
            self._labels = labels
        return self._labels

    def check_units(self, units: int, layer: str, what: str) -> None:
        """DataError unless a layer of ``units`` units fits this index: exactly its columns, or
        those rounded up to a multiple of 128 (generateNetCDF's width; the padding columns have
        no label and are never recommended)."""
        n = self.n_columns
        if units in (n, round_up_128(n)):
            return
        rounded = f" (or {round_up_128(n):,}, rounded up to a multiple of 128 as generateNetCDF does)" \
            if round_up_128(n) != n else ""
        raise DataError(f"{self.path}: the {what} index has {len(self.by_label):,} labels over {n:,} columns, but "
                        f"layer '{layer}' of the network has {units:,} units; a network trained with this index "
                        f"has {n:,} units{rounded}: give the index the network was trained with")

    def labelled(self, width: int) -> np.ndarray:
        """(width,) bool: the columns that have a label."""
        mask = np.zeros(width, dtype=bool)
        reach = min(width, self.n_columns)
        mask[:reach] = [label is not None for label in self.labels[:reach]]
        return mask

    def label_array(self, width: int) -> np.ndarray:
        """(width,) object array of labels (bytes or None), for vectorised lookups."""
        out = np.full(width, None, dtype=object)
        out[:min(width, self.n_columns)] = self.labels[:width]
        return out


def show(label: bytes) -> str:
    return show_label(label)


def first_unknown(path: str | os.PathLike, known: dict[bytes, int]) -> tuple[str, int, bytes] | None:
    """(file, line, label) of the first datapoint of a DSSTNE text file (or directory) whose
    feature is not in ``known``; None if every feature is known."""
    for file in input_files(path):
        with open_text_input(file) as stream:
            for lineno, line in enumerate(stream, 1):
                _, tab, rest = line.rstrip(b"\r\n").partition(b"\t")
                if not tab:
                    continue
                for point in rest.split(b":"):
                    feature = point.partition(b",")[0].strip()  # as read_text reads it
                    if feature and feature not in known:
                        return file, lineno, feature
    return None


def unknown_error(path, index: Index, dropped: int, what: str) -> DataError:
    """The error for text data that uses labels missing from ``index``."""
    where = first_unknown(path, index.by_label)
    first = f"{where[0]}:{where[1]}: feature '{show(where[2])}'" if where else f"{path}: a feature"
    return DataError(f"{first} is not in the {what} index {index.path} ({dropped:,} datapoints with unknown "
                     "features in all); give the index the network was trained with, or pass --drop-unknown "
                     "to skip them as DSSTNE does")


def read_labelled_text(path, index: Index, *, what: str, name: str = "input", width: int | None = None,
                       samples: dict[bytes, int] | None = None, analog: bool = False,
                       drop_unknown: bool = False):
    """``read_text`` with a fixed features index: unknown features are an error naming the file,
    line and label, or (``drop_unknown``) dropped with a DataWarning counting them."""
    data = read_text(path, name=name, analog=analog, features=index.by_label, samples=samples,
                     add_features=False, width=width)
    if data.dropped:
        if not drop_unknown:
            raise unknown_error(path, index, data.dropped, what)
        warnings.warn(f"{path}: dropped {data.dropped:,} datapoints whose features are not in the {what} index "
                      f"{index.path}", DataWarning, stacklevel=2)
    return data


def sample_labels(sample_index: dict[bytes, int], n_rows: int) -> list[bytes]:
    """The label of each row 0..n_rows−1 (rows without a label are named by their number)."""
    labels: list[bytes | None] = [None] * n_rows
    for label, row in sample_index.items():
        if row < n_rows:
            labels[row] = label
    return [b"%d" % r if lab is None else lab for r, lab in enumerate(labels)]


def read_item_list(path: str | os.PathLike, index: Index, what: str) -> np.ndarray:
    """Columns of the item labels listed in a file, one a line (anything after a TAB is ignored,
    so an index file is a list too). Labels missing from the index are skipped with a warning:
    they can never be recommended anyway."""
    path = os.fspath(path)
    columns, unknown, first = [], 0, None
    with open_text_input(path) as stream:
        for lineno, line in enumerate(stream, 1):
            label = line.rstrip(b"\r\n").partition(b"\t")[0].strip()
            if not label:
                continue
            column = index.by_label.get(label)
            if column is None:
                unknown += 1
                first = first or (lineno, label)
            else:
                columns.append(column)
    if unknown:
        warnings.warn(f"{path}: {unknown:,} {what} labels are not in the output index {index.path} (first: "
                      f"'{show(first[1])}' on line {first[0]}); they are ignored", DataWarning, stacklevel=2)
    return np.asarray(columns, dtype=np.int64)


def read_filter(path: str | os.PathLike, sample_index: dict[bytes, int], n_rows: int, index: Index,
                width: int) -> SparseDataset:
    """A DSSTNE samples-filter file (text format; reference/dsstne.md §5.3) as the items to
    remove from each row: samples looked up among the rows' labels, features in the output index,
    unknown ones of either skipped with a warning (as DSSTNE). Values are ignored: a listed item
    is removed (DSSTNE multiplied the score by the value, so MovieLens timestamps boosted seen
    items instead of removing them)."""
    data = read_text(path, name="filter", features=index.by_label, samples=dict(sample_index),
                     add_features=False, width=width)
    extra = data.dataset.n_examples - n_rows
    skipped = ([f"{extra:,} samples not in the input"] if extra > 0 else []) + \
        ([f"{data.dropped:,} datapoints whose items are not in {index.path}"] if data.dropped else [])
    if skipped:
        warnings.warn(f"{path}: skipped {' and '.join(skipped)}", DataWarning, stacklevel=2)
    dataset = data.dataset[:n_rows] if extra > 0 else data.dataset
    if dataset.n_examples < n_rows:  # samples of the input absent from the filter file
        pad = np.full(n_rows - dataset.n_examples, dataset.offsets[-1], dtype=np.int64)
        dataset = dataset.replace(offsets=np.concatenate([dataset.offsets, pad]))
    return dataset


def column_map(source: Index, target: Index, width: int) -> np.ndarray:
    """(width,) int64: the target column of each source column with the same label, −1 if none."""
    out = np.full(width, -1, dtype=np.int64)
    for column, label in enumerate(source.labels[:width]):
        if label is not None:
            out[column] = target.by_label.get(label, -1)
    return out


def map_columns(dataset: SparseDataset, mapping: np.ndarray | None, width: int, name: str = "seen") -> SparseDataset:
    """The dataset's items moved to other columns by ``mapping`` (None: the same columns),
    dropping those without one; an indicator dataset ``width`` wide."""
    indices = np.asarray(dataset.indices, dtype=np.int64)
    offsets = dataset.offsets
    if mapping is not None:
        mapped = mapping[indices]
        keep = mapped >= 0
        if not keep.all():
            rows = np.repeat(np.arange(dataset.n_examples), np.diff(offsets))
            counts = np.bincount(rows[keep], minlength=dataset.n_examples)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        indices = mapped[keep]
    elif indices.size and indices.max() >= width:
        keep = indices < width
        rows = np.repeat(np.arange(dataset.n_examples), np.diff(offsets))
        counts = np.bincount(rows[keep], minlength=dataset.n_examples)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        indices = indices[keep]
    return SparseDataset(name, (width,), offsets, indices)


def union(a: SparseDataset | None, b: SparseDataset | None) -> SparseDataset | None:
    """Row-wise union of two indicator datasets with the same rows (either may be None)."""
    if a is None or b is None:
        return a if b is None else b
    counts = np.diff(a.offsets) + np.diff(b.offsets)
    rows = np.concatenate([np.repeat(np.arange(a.n_examples), np.diff(a.offsets)),
                           np.repeat(np.arange(b.n_examples), np.diff(b.offsets))])
    order = np.argsort(rows, kind="stable")
    indices = np.concatenate([np.asarray(a.indices, np.int64), np.asarray(b.indices, np.int64)])[order]
    return SparseDataset(a.name, a.dims, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), indices)
