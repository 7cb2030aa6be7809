"""DSSTNE's text format (reference/dsstne.md §5.1); index files are in index.py.

A text line is ``sample<TAB>feature[,value]:feature[,value]:...``: the sample label is
everything before the first TAB (it may hold commas), datapoints are separated by ':' and
empty datapoints (a trailing ':') are skipped.

Stricter than DSSTNE, which skips or half-reads bad lines with a warning: a line without a TAB,
a second TAB, an empty feature, a datapoint with two commas, or (``analog``) a missing or
non-numeric or non-finite value is a DataError naming the file, the line and the datapoint.
Empty lines are skipped. Labels are bytes-exact (UTF-8, undecodable bytes kept as surrogates)
but for spaces around them: 'b ' (a trailing space) and 'b' are one feature, and a datapoint
of spaces only is an empty one, with one DataWarning a file saying where spaces were removed.
A UTF-8 byte-order mark before the first line is skipped (``io.inputs.open_text_input``).

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
import re
import warnings
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import Iterable, Mapping, Sequence

import numpy as np

from destiny.data import csr
from destiny.data.dataset import SparseDataset, exact_values
from destiny.data.index import ENCODING, labels_by_index, show_label
from destiny.errors import DataError, DataWarning
from destiny.io.atomic import Staged, atomic_open
from destiny.io.inputs import file_kind, open_text_input

_NOT_SEPARATORS = bytes(b for b in range(256) if b not in b",:")
_SPACE = re.compile(rb"[ \v\f\r]")  # whitespace a label may carry by accident (a TAB is the separator)
VALUE_TYPES = ("auto", "float32", "float64")


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
    samples_read: int = 0  # distinct samples in the text (the rows follow the samples index: maybe more)

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

    BATCH = 4096  # lines whose arrays are joined into one, to bound per-array overhead

    def __init__(self, features: _Labels, samples: _Labels, analog: bool):
        self.features, self.samples, self.analog = features, samples, analog
        self.dtype = np.int32 if features.next < (1 << 30) else np.int64
        self.line_samples, self.counts = array.array("q"), array.array("q")  # per kept line
        self.linenos = array.array("q")
        self.files: list[tuple[int, str]] = []  # (first kept line, path) of each file
        self.feats: list[np.ndarray] = []  # joined batches
        self.vals: list[np.ndarray] = []
        self.batch_feats: list[np.ndarray] = []
        self.batch_vals: list[np.ndarray] = []
        self.dropped = 0
        self.pattern = b""
        self.trimmed: dict[str, tuple[int, bytes, int]] = {}  # path → (first line, its label, labels trimmed)

    def parse_file(self, path: str) -> None:
        kind = file_kind(path)
        if kind is not None:  # else its first bytes would be "no TAB after the sample label"
            raise DataError(f"{path}: a {kind}, not DSSTNE text ('sample<TAB>feature[,value]:feature[,value]:...')")
        self.files.append((len(self.counts), path))
        with open_text_input(path) as stream:
            for lineno, line in enumerate(stream, 1):
                if line.endswith(b"\n"):
                    line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if line:
                    self.parse_line(line, path, lineno)
        self.flush()

    def flush(self) -> None:
        if self.batch_feats:
            self.feats.append(np.concatenate(self.batch_feats))
            self.batch_feats.clear()
        if self.batch_vals:
            self.vals.append(np.concatenate(self.batch_vals))
            self.batch_vals.clear()

    def where(self, line: int) -> tuple[str, int]:
        """(path, line number) of kept line ``line``."""
        path = next(path for first, path in reversed(self.files) if first <= line)
        return path, self.linenos[line]

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
        if _SPACE.search(line):
            label, rest = self._trim(label, rest, path, lineno)
            if not label:
                raise DataError(f"{path}:{lineno}: the sample label before the TAB is only spaces")
        tokens, values = self._fast(rest)
        if tokens is None:
            tokens, values = self._slow(rest, path, lineno)
        if self.analog and values is None:  # a line without datapoints
            values = np.zeros(0, dtype=np.float64)
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
        self.linenos.append(lineno)
        self.batch_feats.append(feats)
        if self.analog:
            self.batch_vals.append(values)
        if len(self.batch_feats) >= self.BATCH:
            self.flush()

    def _trim(self, label: bytes, rest: bytes, path: str, lineno: int) -> tuple[bytes, bytes]:
        """The label and datapoints without the spaces around each label and value, noted for
        ``warn_trimmed`` (a datapoint of spaces only becomes an empty one, which is skipped)."""
        new_label = label.strip()
        new_rest = b":".join(b",".join(part.strip() for part in point.split(b",")) for point in rest.split(b":"))
        if new_label != label or new_rest != rest:
            example = label if new_label != label else next(
                token for token in rest.replace(b",", b":").split(b":") if token != token.strip())
            first = self.trimmed.get(path)
            self.trimmed[path] = (lineno, example, 1) if first is None else (first[0], first[1], first[2] + 1)
        return new_label, new_rest

    def warn_trimmed(self) -> None:
        for path, (lineno, example, lines) in self.trimmed.items():
            more = f" (and on {lines - 1:,} more lines)" if lines > 1 else ""
            warnings.warn(f"{path}:{lineno}: read '{show_label(example)}' as '{show_label(example.strip())}'{more}: "
                          "spaces around a label or a value are not part of it", DataWarning, stacklevel=3)

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
            where = f"{path}:{lineno}: datapoint {k} '{show_label(point)}'"
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
                    raise DataError(f"{where}: value '{show_label(parts[1])}' is not a number") from None
                if not np.isfinite(value):
                    raise DataError(f"{where}: value '{show_label(parts[1])}' is not finite")
                values.append(value)
            tokens.append(parts[0])
        return tokens, np.array(values, dtype=np.float64) if self.analog else None

    def check_finite(self, values: np.ndarray, line_offsets: np.ndarray) -> None:
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            path, lineno = self.where(int(csr.row_of(line_offsets, int(bad[0]))))
            with open_text_input(path) as stream:
                line = stream.read().split(b"\n")[lineno - 1].rstrip(b"\r")
            self._slow(line.partition(b"\t")[2], path, lineno)  # raises with the datapoint


_DATAPOINT = rb"[^\t:,]+(?:,[^\t:,]*)?"
_TEXT_LINE = re.compile(rb"[^\t]+\t" + _DATAPOINT + rb"(?::" + _DATAPOINT + rb")*:?")
SNIFF_BYTES = 1 << 20


def looks_like_text(path: str | os.PathLike, lines: int = 20) -> bool:
    """Whether a file reads as DSSTNE text rather than a table: its first ``lines`` lines (in
    its first MiB) are each 'sample<TAB>feature[,value]:...' with one TAB, and some line has a
    ':' or ',' after it (a two-column 'user<TAB>item' table reads the same either way)."""
    try:
        with open_text_input(path) as stream:
            head = stream.read(SNIFF_BYTES)
    except (OSError, ValueError):
        return False
    rows = [row.rstrip(b"\r") for row in head.split(b"\n")]
    if len(head) == SNIFF_BYTES and len(rows) > 1:
        rows = rows[:-1]  # the last line is cut short
    elif len(head) == SNIFF_BYTES:
        rows = [rows[0].rpartition(b":")[0] or rows[0]]  # one long line: up to its last whole datapoint
    rows = [row for row in rows if row.strip()][:lines]
    if not rows or not all(_TEXT_LINE.fullmatch(row) for row in rows):
        return False
    return any(b":" in row.partition(b"\t")[2] or b"," in row.partition(b"\t")[2] for row in rows)


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
    parser.warn_trimmed()
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
    if duplicates == "error":
        _reject_duplicates(path, dataset, features_map.map, samples_map.map)
    dataset, merged = dataset.deduplicate()
    if merged:
        warnings.warn(f"{path}: merged {merged:,} features listed twice within a sample "
                      f"({'values summed' if analog else 'one entry kept'})", DataWarning, stacklevel=2)
    return TextData(dataset, features_map.map, samples_map.map, features_map.added, samples_map.added,
                    parser.dropped, repeated, len(parser.counts) - repeated)


def _reject_duplicates(path, dataset: SparseDataset, features: dict[bytes, int], samples: dict[bytes, int]) -> None:
    repeats, _ = csr.duplicate_positions(dataset.offsets, dataset.indices, dataset.n_features)
    if len(repeats):
        at = int(repeats.min())
        row, feature = int(csr.row_of(dataset.offsets, at)), int(dataset.indices[at])
        sample = next(label for label, i in samples.items() if i == row)
        label = next(label for label, i in features.items() if i == feature)
        raise DataError(f"{path}: sample '{show_label(sample)}' lists feature '{show_label(label)}' more than once "
                        f"({len(repeats):,} repeated datapoints in all); list each feature once a sample")


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
               sample_labels: Sequence | Mapping, *, stage: Staged | None = None) -> None:
    """Write a dataset as DSSTNE text, atomically (``stage``: as one file of a set,
    ``io.atomic.staged``): ``sample<TAB>feature[,value]:...`` a row.

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
    with atomic_open(path, "wb", stage=stage) as stream:
        for first, stop in csr.chunks(dataset.offsets):
            lo, hi = int(dataset.offsets[first]), int(dataset.offsets[stop])
            tokens = features[dataset.indices[lo:hi]].tolist()
            if dataset.values is not None:
                tokens = list(map(operator.add, tokens, format_values(dataset.values[lo:hi])))
            ends = (dataset.offsets[first:stop + 1] - lo).tolist()
            lines = [f"{samples[r]}\t{':'.join(tokens[ends[k]:ends[k + 1]])}\n"
                     for k, r in enumerate(range(first, stop)) if ends[k + 1] > ends[k]]
            stream.write("".join(lines).encode(*ENCODING))
