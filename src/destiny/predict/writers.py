"""Recommendation files, written batch by batch and atomically (whole or absent).

* ``recs``: DSSTNE's format (reference/dsstne.md §5.4), one line per example in row order:
  ``label<TAB>item,score:item,score:…:`` with DSSTNE's trailing ':' and scores as ``%.3f``
  (DSSTNE's default ``-p 4.3f``). Empty slots are left out, so a line may hold fewer than K.
* ``csv``: a header ``user,rank,item,score`` then one row per recommendation (rank from 1),
  scores as ``%.9g`` (exact float32) unless a score format is given.
* ``parquet``: the same four columns (score float32), through pyarrow.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os

import numpy as np

from destiny.data.index import ENCODING
from destiny.errors import UsageError
from destiny.io.atomic import atomic_open, atomic_path

FORMATS = ("recs", "csv", "parquet")
DEFAULT_SCORE_FORMAT = {"recs": "%.3f", "csv": "%.9g", "parquet": None}


def score_format(text: str | None, fmt: str) -> str | None:
    """A printf format of one float: ``%.3f``, or DSSTNE's ``-p`` spelling ``4.3f``."""
    if text is None:
        return DEFAULT_SCORE_FORMAT[fmt]
    spec = text if text.startswith("%") else "%" + text
    try:
        probe = spec % 0.5
    except (TypeError, ValueError):
        probe = None
    if probe is None or any(c in probe for c in ",:\t\n"):
        raise UsageError(f"--score-format {text!r}: give a printf format of one number without ',', ':' or TAB, "
                         "such as %.3f, %.6g or DSSTNE's 4.3f")
    return spec


def check_format(fmt: str) -> None:
    """UsageError if the format cannot be written here (parquet without pyarrow)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise UsageError("--format parquet needs pyarrow, which is not installed: pip install pyarrow "
                             "(or write --format csv)") from None


class RecsWriter:
    """``with RecsWriter(path, fmt, item_labels) as w: w.write(labels, scores, items)`` per batch.

    item_labels[c]: the label (bytes) of output column c. The file appears only when the block
    exits without an exception.
    """

    def __init__(self, path: str | os.PathLike, fmt: str, item_labels, score_fmt: str | None = None):
        check_format(fmt)
        self.path, self.fmt = os.fspath(path), fmt
        self.items = np.asarray(list(item_labels) + [b""], dtype=object)  # index −1 → b""
        self.score_fmt = score_format(score_fmt, fmt)
        self._stack = contextlib.ExitStack()
        self.rows = 0
        self.written = 0

    def __enter__(self) -> "RecsWriter":
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            tmp = self._stack.enter_context(atomic_path(self.path, ".parquet"))
            schema = pa.schema([("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()),
                                ("score", pa.float32())])
            self._parquet = self._stack.enter_context(pq.ParquetWriter(tmp, schema))
            self._pa = pa
        elif self.fmt == "csv":
            raw = self._stack.enter_context(atomic_open(self.path, "wb"))
            stream = self._stack.enter_context(io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape",
                                                                newline=""))
            self._csv = csv.writer(stream, lineterminator="\n")
            self._csv.writerow(["user", "rank", "item", "score"])
        else:
            self._stream = self._stack.enter_context(atomic_open(self.path, "wb"))
            self._point = b"%s," + self.score_fmt.encode("ascii") + b":"
        return self

    def __exit__(self, *exc) -> bool:
        return self._stack.__exit__(*exc)

    def write(self, labels: list[bytes], scores: np.ndarray, items: np.ndarray) -> None:
        """One batch: labels (n,) of the examples, scores and items (n, K), −1 in empty slots."""
        self.rows += len(labels)
        self.written += int((items >= 0).sum())
        if self.fmt == "recs":
            self._write_recs(labels, scores, items)
        elif self.fmt == "csv":
            self._write_csv(labels, scores, items)
        else:
            self._write_parquet(labels, scores, items)

    def _write_recs(self, labels, scores, items) -> None:
        point, names = self._point, self.items
        lines = []
        for label, row_scores, row_items in zip(labels, scores.tolist(), items.tolist()):
            body = b"".join([point % (names[i], s) for i, s in zip(row_items, row_scores) if i >= 0])
            lines.append(label + b"\t" + body + b"\n")
        self._stream.write(b"".join(lines))

    def _write_csv(self, labels, scores, items) -> None:
        fmt, names = self.score_fmt, self.items
        for label, row_scores, row_items in zip(labels, scores.tolist(), items.tolist()):
            user = label.decode(*ENCODING)
            self._csv.writerows([user, rank, names[i].decode(*ENCODING), fmt % s]
                                for rank, (i, s) in enumerate(zip(row_items, row_scores), 1) if i >= 0)

    def _write_parquet(self, labels, scores, items) -> None:
        valid = items >= 0
        per_row = valid.sum(1)
        users = np.repeat(np.asarray([lab.decode(*ENCODING) for lab in labels], dtype=object), per_row)
        ranks = np.broadcast_to(np.arange(1, items.shape[1] + 1, dtype=np.int32), items.shape)[valid]
        names = np.asarray([n.decode(*ENCODING) for n in self.items[items[valid]]], dtype=object)
        table = self._pa.table({"user": users.tolist(), "rank": ranks, "item": names.tolist(),
                                "score": scores[valid].astype(np.float32)}, schema=self._parquet.schema)
        self._parquet.write_table(table)
