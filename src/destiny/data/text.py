"""DSSTNE's text format and index files (reference/dsstne.md §5.1–5.2).

A text line is ``sample<TAB>feature[,value]:feature[,value]:...``: the sample label is
everything before the first TAB (it may hold commas), datapoints are separated by ':' and
empty datapoints (a trailing ':') are skipped. An index file has one ``label<TAB>index`` a line.

Stricter than DSSTNE, which skips or half-reads bad lines with a warning: a line without a TAB,
a second TAB, an empty feature, a datapoint with two commas, or (``analog``) a missing or
non-numeric or non-finite value is a DataError naming the file, the line and the datapoint.
Empty lines are skipped. Labels are bytes-exact (UTF-8, undecodable bytes kept as surrogates).

Rows are aligned to the samples index: row i is the sample whose index is i, so input and
output files made with one samples index line up even when a sample is absent from one of
them (DSSTNE packs the present samples instead, and then they do not). A sample given on
several lines keeps its last line, with a DataWarning, as in DSSTNE.

Speed: the per-line work is bytes.split/translate and dict lookups mapped in C, about
0.2–0.5 µs a datapoint: 20M datapoints in well under a minute on one core.
"""

from __future__ import annotations

import array
import operator
import os
import warnings
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import Iterable, Mapping, Sequence

import numpy as np

from destiny.data import csr
from destiny.data.dataset import SparseDataset, exact_values
from destiny.errors import DataError, DataWarning
from destiny.io.atomic import atomic_open

ENCODING = ("utf-8", "surrogateescape")
_NOT_SEPARATORS = bytes(b for b in range(256) if b not in b",:")
VALUE_TYPES = ("auto", "float32", "float64")


def _show(token: bytes, limit: int = 40) -> str:
    text = token.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"


# -- index files ---------------------------------------------------------------------------
def read_index_raw(path: str | os.PathLike) -> dict[bytes, int]:
    """``read_index`` with the labels left as bytes, as the text parser looks them up."""
    path = os.fspath(path)
    with open(path, "rb") as stream:
        data = stream.read()
    index: dict[bytes, int] = {}
    lines = data.split(b"\n")
    for lineno, line in enumerate(lines, 1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue
        label, tab, number = line.partition(b"\t")
        where = f"{path}:{lineno}"
        if not tab:
            raise DataError(f"{where}: no TAB; each line of an index file is 'label<TAB>index'")
        if b"\t" in number:
            raise DataError(f"{where}: more than one TAB; each line of an index file is 'label<TAB>index'")
        if not label:
            raise DataError(f"{where}: empty label before the TAB")
        if not number.isdigit() or len(number) > 18:
            raise DataError(f"{where}: index '{_show(number)}' of '{_show(label)}' is not a non-negative integer"
                            + (" below 10^18" if number.isdigit() else ""))
        if label in index:
            first = next(i for i, other in enumerate(lines, 1) if other.rstrip(b"\r").partition(b"\t")[0] == label)
            raise DataError(f"{where}: label '{_show(label)}' is listed again (first on line {first}); "
                            "each label must appear once")
        index[label] = int(number)
    _check_distinct(index, lines, path)
    return index


def _check_distinct(index: dict[bytes, int], lines: list[bytes], path: str) -> None:
    """Two labels with one index would share a row or column: reject, naming both lines."""
    if not index:
        return
    numbers = np.sort(np.fromiter(index.values(), dtype=np.int64, count=len(index)))
    if not np.any(numbers[1:] == numbers[:-1]):
        return
    owner: dict[int, int] = {}
    for lineno, line in enumerate(lines, 1):
        label, tab, number = line.rstrip(b"\r").partition(b"\t")
        if not tab:
            continue
        if int(number) in owner and owner[int(number)] != lineno:
            raise DataError(f"{path}:{lineno}: index {int(number)} of '{_show(label)}' is already given on line "
                            f"{owner[int(number)]}; each index must belong to one label")
        owner[int(number)] = lineno


def read_index(path: str | os.PathLike) -> dict[str, int]:
    """An index file (``label<TAB>index`` lines) as {label: index}.

    DataError with file:line for a line without exactly one TAB, an empty label, an index that
    is not a non-negative integer, a label listed twice or an index given to two labels.
    """
    return {label.decode(*ENCODING): i for label, i in read_index_raw(path).items()}


def write_index(path: str | os.PathLike, index: Mapping[str, int] | Mapping[bytes, int]) -> None:
    """Write ``label<TAB>index`` lines sorted by index (DSSTNE wrote hash order), atomically."""
    lines = []
    for label, i in sorted(index.items(), key=operator.itemgetter(1)):
        raw = label if isinstance(label, bytes) else label.encode(*ENCODING)
        if not raw or any(c in raw for c in b"\t\n\r"):
            raise DataError(f"{path}: label {label!r} cannot be written to an index file: it is empty or holds "
                            "a TAB or line break")
        lines.append(b"%s\t%d\n" % (raw, i))
    with atomic_open(path, "wb") as stream:
        stream.write(b"".join(lines))


def labels_by_index(index: Mapping[str, int]) -> list[str | None]:
    """The inverse of an index: position i holds the label of index i (None where no label)."""
    labels: list[str | None] = [None] * (max(index.values()) + 1 if index else 0)
    for label, i in index.items():
        labels[i] = label
    return labels


# -- text files ----------------------------------------------------------------------------
class _Labels:
    """A label → index map grown while parsing; bytes keys keep lookups cheap."""

    def __init__(self, index: dict[bytes, int], grow: bool):
        self.map, self.grow = index, grow
        self.next = max(index.values()) + 1 if index else 0  # max + 1, not size: never reuse an index
        self.added = 0

    def add(self, labels: Iterable[bytes]) -> None:
        for label in dict.fromkeys(labels):  # distinct, in first-appearance order
            if label not in self.map:
                self.map[label] = self.next
                self.next += 1
                self.added += 1


@dataclass
class TextData:
    """A parsed text file: the dataset, the updated indices, and what happened on the way."""

    dataset: SparseDataset
    feature_index: dict[bytes, int] = field(repr=False)
    sample_index: dict[bytes, int] = field(repr=False)
    features_added: int = 0
    samples_added: int = 0
    dropped: int = 0  # datapoints whose feature is not in a fixed index
    repeated_samples: int = 0  # lines overridden by a later line of the same sample

    @property
    def features(self) -> dict[str, int]:
        return {label.decode(*ENCODING): i for label, i in self.feature_index.items()}

    @property
    def samples(self) -> dict[str, int]:
        return {label.decode(*ENCODING): i for label, i in self.sample_index.items()}


def _as_bytes_index(index: Mapping | None) -> dict[bytes, int]:
    if index is None:
        return {}
    return {(k if isinstance(k, bytes) else k.encode(*ENCODING)): int(v) for k, v in index.items()}


def input_files(path: str | os.PathLike) -> list[str]:
    """A text file, or every regular file directly in a directory in sorted order (as DSSTNE)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(os.path.join(path, n) for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)))
        if not files:
            raise DataError(f"{path}: the directory holds no files")
        return files
    return [path]


class _Parser:
    """Accumulates lines of one or more text files into per-line arrays."""

    def __init__(self, features: _Labels, samples: _Labels, analog: bool):
        self.features, self.samples, self.analog = features, samples, analog
        self.dtype = np.int32 if features.next < (1 << 30) else np.int64
        self.line_samples, self.counts = array.array("q"), array.array("q")
        self.where: list[tuple[str, int]] = []  # (file, line number) of each kept line
        self.feats: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.dropped = 0
        self.pattern = b""

    def parse_file(self, path: str) -> None:
        with open(path, "rb") as stream:
            for lineno, line in enumerate(stream, 1):
                if line.endswith(b"\n"):
                    line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if line:
                    self.parse_line(line, path, lineno)

    def parse_line(self, line: bytes, path: str, lineno: int) -> None:
        label, tab, rest = line.partition(b"\t")
        if not tab:
            raise DataError(f"{path}:{lineno}: no TAB after the sample label; each line must be "
                            "'sample<TAB>feature[,value]:feature[,value]:...'")
        if not label:
            raise DataError(f"{path}:{lineno}: empty sample label before the TAB")
        if b"\t" in rest:
            raise DataError(f"{path}:{lineno}: a second TAB; datapoints are separated by ':' and a feature "
                            "label cannot hold a TAB")
        tokens, values = self._fast(rest)
        if tokens is None:
            tokens, values = self._slow(rest, path, lineno)
        feats = np.fromiter(map(self.features.map.get, tokens, repeat(-1)), self.dtype, len(tokens))
        if len(feats) and feats.min() < 0:
            if self.features.grow:
                self.features.add(compress(tokens, feats < 0))
                feats = np.fromiter(map(self.features.map.get, tokens), self.dtype, len(tokens))
            else:
                known = feats >= 0
                self.dropped += len(feats) - int(known.sum())
                feats = feats[known]
                values = None if values is None else values[known]
        sample = self.samples.map.get(label)
        if sample is None:
            self.samples.add((label,))
            sample = self.samples.map[label]
        self.line_samples.append(sample)
        self.counts.append(len(feats))
        self.where.append((path, lineno))
        self.feats.append(feats)
        if self.analog:
            self.vals.append(values)

    def _fast(self, rest: bytes):
        """(feature tokens, float64 values) for a well-formed line, else (None, None)."""
        if b"," not in rest:
            if self.analog and rest:
                return None, None
            tokens = rest.split(b":")
            if not rest or b"::" in rest or rest[:1] == b":" or rest[-1:] == b":":
                tokens = [t for t in tokens if t]  # empty datapoints are skipped
            return tokens, None
        separators = rest.translate(None, _NOT_SEPARATORS)
        if len(separators) % 2 == 0 or rest[:1] == b"," or rest[-1:] == b"," or b":," in rest or b",:" in rest:
            return None, None
        if len(separators) > len(self.pattern):
            self.pattern = b",:" * (len(separators) // 2 + 1)
        if separators != self.pattern[:len(separators)]:
            return None, None
        tokens = rest.replace(b":", b",").split(b",")
        if not self.analog:
            return tokens[0::2], None
        try:
            return tokens[0::2], np.fromiter(map(float, tokens[1::2]), np.float64, len(tokens) // 2)
        except ValueError:
            return None, None

    def _slow(self, rest: bytes, path: str, lineno: int):
        """Datapoint by datapoint, to skip empty ones and to say exactly what is wrong."""
        tokens, values = [], []
        for k, point in enumerate(rest.split(b":"), 1):
            if not point:
                continue
            parts = point.split(b",")
            where = f"{path}:{lineno}: datapoint {k} '{_show(point)}'"
            if len(parts) > 2:
                raise DataError(f"{where} has {len(parts) - 1} commas; write feature or feature,value")
            if not parts[0]:
                raise DataError(f"{where} has an empty feature label")
            if self.analog:
                if len(parts) < 2 or not parts[1]:
                    raise DataError(f"{where} has no value; analog data needs feature,value")
                try:
                    value = float(parts[1])
                except ValueError:
                    raise DataError(f"{where}: value '{_show(parts[1])}' is not a number") from None
                if not np.isfinite(value):
                    raise DataError(f"{where}: value '{_show(parts[1])}' is not finite")
                values.append(value)
            tokens.append(parts[0])
        return tokens, np.array(values, dtype=np.float64) if self.analog else None

    def check_finite(self, values: np.ndarray, line_offsets: np.ndarray) -> None:
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            path, lineno = self.where[csr.row_of(line_offsets, int(bad[0]))]
            with open(path, "rb") as stream:
                line = stream.read().split(b"\n")[lineno - 1].rstrip(b"\r")
            self._slow(line.partition(b"\t")[2], path, lineno)  # raises with the datapoint


def read_text(path: str | os.PathLike, *, name: str = "input", analog: bool = False,
              features: Mapping | None = None, samples: Mapping | None = None, add_features: bool = True,
              width: int | None = None, value_type: str = "auto", duplicates: str = "merge") -> TextData:
    """Parse a DSSTNE text file (or a directory of them) into a SparseDataset.

    ``features``/``samples``: existing indices ({label: index}, str or bytes labels), extended
    with new labels numbered in first-appearance order (index = max + 1). With
    ``add_features=False`` the features index is fixed and unknown features are dropped (counted
    in ``TextData.dropped``). ``analog``: keep the values (else an indicator dataset; values in the
    text are ignored, as DSSTNE's ``-t indicator``). ``value_type``: "auto" keeps each value
    exactly in the narrowest type (see exact_values), "float32" rounds as DSSTNE does.
    ``width``: default the feature count (max index + 1). ``duplicates``: "merge" or "error".
    """
    if value_type not in VALUE_TYPES:
        raise ValueError(f"value_type must be one of {VALUE_TYPES}, not {value_type!r}")
    features_map = _Labels(_as_bytes_index(features), add_features)
    samples_map = _Labels(_as_bytes_index(samples), True)
    parser = _Parser(features_map, samples_map, analog)
    for file in input_files(path):
        parser.parse_file(file)
    if not parser.counts:
        raise DataError(f"{path}: no lines with data; each line must be 'sample<TAB>feature[,value]:...'")
    n_features = features_map.next
    width = n_features if width is None else int(width)
    if width < max(n_features, 1):
        raise DataError(f"{path}: width {width} is smaller than the {n_features} features of the index")
    offsets, rows, repeated = _rows(parser, samples_map.next)
    line_offsets = csr.counts_to_offsets(np.frombuffer(parser.counts, dtype=np.int64))
    indices = np.concatenate(parser.feats)
    parser.feats.clear()
    values = None
    if analog:
        values = np.concatenate(parser.vals)
        parser.vals.clear()
        parser.check_finite(values, line_offsets)
        values = exact_values(values) if value_type == "auto" else values.astype(value_type)
    if rows is not None:
        _, positions = csr.take_rows(line_offsets, rows)
        indices = indices[positions]
        values = None if values is None else values[positions]
    if repeated:
        warnings.warn(f"{path}: {repeated:,} sample labels appear on several lines; the last line of each is kept",
                      DataWarning, stacklevel=2)
    dataset = SparseDataset(name, (width,), offsets, indices, values)
    dataset, merged = dataset.deduplicate()
    if merged and duplicates == "error":
        raise DataError(f"{path}: {merged:,} features are listed twice within a sample; list each once")
    if merged:
        warnings.warn(f"{path}: merged {merged:,} features listed twice within a sample "
                      f"({'values summed' if analog else 'one entry kept'})", DataWarning, stacklevel=2)
    return TextData(dataset, features_map.map, samples_map.map, features_map.added, samples_map.added,
                    parser.dropped, repeated)


def _rows(parser: _Parser, n_rows: int) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Row offsets aligned to the samples index, the kept lines in row order (None: all lines,
    already in order) and how many lines a later line of the same sample overrode."""
    line_samples = np.frombuffer(parser.line_samples, dtype=np.int64)
    counts = np.frombuffer(parser.counts, dtype=np.int64)
    if np.all(line_samples[1:] > line_samples[:-1]):
        kept = None
        row_counts = np.zeros(n_rows, dtype=np.int64)
        row_counts[line_samples] = counts
        return csr.counts_to_offsets(row_counts), kept, 0
    reversed_first = np.unique(line_samples[::-1], return_index=True)[1]
    kept = len(line_samples) - 1 - reversed_first  # last line of each sample, in sample order
    row_counts = np.zeros(n_rows, dtype=np.int64)
    row_counts[line_samples[kept]] = counts[kept]
    return csr.counts_to_offsets(row_counts), kept, len(line_samples) - len(kept)


def format_values(values: np.ndarray) -> list[str]:
    """Values as text: integers as integers ("1112486027", "5"), others in the shortest form
    that reads back to the same float32 or float64."""
    if values.dtype.kind in "iu":
        return list(map(str, values.tolist()))
    integral = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2.0 ** 63)
    if integral.all():
        return list(map(str, values.astype(np.int64).tolist()))
    unique, inverse = np.unique(values, return_inverse=True)
    shortest = str if values.dtype == np.float32 else repr
    cast = np.float32 if values.dtype == np.float32 else float
    texts = [str(int(v)) if v == np.floor(v) and abs(v) < 2.0 ** 63 else shortest(cast(v)) for v in unique.tolist()]
    return np.asarray(texts, dtype=object)[inverse].tolist()


def _names(labels: Sequence | Mapping, n: int, what: str) -> np.ndarray:
    """(n,) object array: the label of each feature or example (None where there is none)."""
    if isinstance(labels, Mapping):
        labels = labels_by_index({(k.decode(*ENCODING) if isinstance(k, bytes) else k): v
                                  for k, v in labels.items()})
    names = np.full(n, None, dtype=object)
    given = list(labels)[:n]
    names[:len(given)] = [None if g is None else str(g) for g in given]
    return names


def write_text(path: str | os.PathLike, dataset: SparseDataset, feature_labels: Sequence | Mapping,
               sample_labels: Sequence | Mapping) -> None:
    """Write a dataset as DSSTNE text, atomically: ``sample<TAB>feature[,value]:...`` a row.

    ``feature_labels[i]`` names feature i and ``sample_labels[r]`` example r (or give the
    {label: index} indices). Rows without entries are not written (the text format cannot tell
    an empty sample from an absent one). Entries keep their order; values as format_values.
    """
    features = _names(feature_labels, dataset.n_features, "feature")
    samples = _names(sample_labels, dataset.n_examples, "sample")
    missing = np.fromiter((label is None for label in features), dtype=bool, count=len(features))
    if dataset.nnz and missing[dataset.indices].any():
        at = int(np.argmax(missing[dataset.indices]))
        raise DataError(f"{path}: feature {dataset.indices[at]} (example {csr.row_of(dataset.offsets, at)}) has no "
                        "label; give a features index that covers every feature of the dataset")
    counts = np.diff(dataset.offsets)
    unnamed = np.flatnonzero((counts > 0) & np.fromiter((s is None for s in samples), bool, len(samples)))
    if unnamed.size:
        raise DataError(f"{path}: example {unnamed[0]} has no sample label; give a samples index with one "
                        f"label for each of the {dataset.n_examples} examples")
    if dataset.values is not None:
        features = np.array([None if f is None else f + "," for f in features], dtype=object)
    with atomic_open(path, "wb") as stream:
        for first, stop in csr.chunks(dataset.offsets):
            lo, hi = int(dataset.offsets[first]), int(dataset.offsets[stop])
            tokens = features[dataset.indices[lo:hi]].tolist()
            if dataset.values is not None:
                tokens = list(map(operator.add, tokens, format_values(dataset.values[lo:hi])))
            ends = (dataset.offsets[first:stop + 1] - lo).tolist()
            lines = [f"{samples[r]}\t{':'.join(tokens[ends[k]:ends[k + 1]])}\n"
                     for k, r in enumerate(range(first, stop)) if ends[k + 1] > ends[k]]
            stream.write("".join(lines).encode(*ENCODING))
