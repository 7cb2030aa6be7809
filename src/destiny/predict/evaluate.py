"""Evaluation of ranked recommendations against held-out items: from a network's top-K or from
a recs file, at several K, with a relevance threshold for analog held-out values.

Users are the rows of the held-out data. Those without a relevant held-out item cannot be
scored and are skipped (``users_skipped``); those with relevant items but no recommendations
(absent from the recs file or from the input) count as all misses and are reported in
``users_without_recommendations``. Coverage divides the distinct items recommended in the first
K slots by the catalogue: the labelled items of the output index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from destiny.data.dataset import SparseDataset
from destiny.errors import DataError, UsageError
from destiny.predict.labels import Index, read_labelled_text
from destiny.predict.metrics import METRIC_NAMES, RankingMetrics, metrics_at, relevant_items


@dataclass
class Evaluation:
    """Metrics at each K and the counts behind them."""

    metrics: list[RankingMetrics]
    catalogue: int
    users_without_recommendations: int = 0
    threshold: float | None = None
    source: str = ""
    held_out: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def users(self) -> int:
        return self.metrics[0].users if self.metrics else 0

    @property
    def users_skipped(self) -> int:
        return self.metrics[0].users_skipped if self.metrics else 0

    def as_dict(self) -> dict:
        """JSON-ready: counts, then one object per K with every metric (NaN → null)."""
        clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
        return {
            "source": self.source,
            "held_out": self.held_out,
            "threshold": self.threshold,
            "users": self.users,
            "users_skipped": self.users_skipped,
            "users_without_recommendations": self.users_without_recommendations,
            "catalogue": self.catalogue,
            "metrics": [{name: clean(getattr(m, name)) for name in ("k", *METRIC_NAMES)} for m in self.metrics],
            "definitions": dict(METRIC_NAMES),
            **self.notes,
        }


def check_ks(ks) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise UsageError(f"-k: every K must be a positive integer, got {' '.join(map(str, ks)) or 'none'}")
    return sorted(set(ks))


def evaluate_lists(items: np.ndarray, held: SparseDataset, ks, catalogue: int, *, threshold: float | None = None,
                   source: str = "", held_out: str = "") -> Evaluation:
    """Metrics of ranked ``items`` (rows, K) against the held-out rows (``held`` has at least as
    many rows; the extra rows have no recommendations). ``threshold``: relevant iff value ≥ it."""
    ks = check_ks(ks)
    items = np.asarray(items, dtype=np.int64)
    if held.n_examples < len(items):
        raise DataError(f"{held_out or 'the held-out data'} has {held.n_examples:,} rows but there are recommendations "
                        f"for {len(items):,}; give held-out data with the same rows (the same samples index)")
    if threshold is not None and held.values is None:
        raise UsageError(f"--threshold {threshold:g} needs analog held-out data (feature,value datapoints); "
                         f"{held_out or 'the held-out data'} holds indicators only")
    offsets, indices = relevant_items(held.offsets, held.indices, held.values, threshold)
    scored = len(items)  # rows with recommendations; held-out rows after them have none
    if held.n_examples > len(items):
        pad = np.full((held.n_examples - len(items), items.shape[1]), -1, dtype=np.int64)
        missing = int((np.diff(offsets)[len(items):] > 0).sum())
        items = np.concatenate([items, pad])
    else:
        missing = 0
    relevant = np.diff(offsets) > 0
    where = held_out or "the held-out data"
    if not relevant.any():
        raise DataError(f"{where}: no user has a relevant held-out item"
                        + (f" (a value ≥ {threshold:g})" if threshold is not None else "")
                        + ", so every metric would be 0; check the file (and --threshold)")
    if not relevant[:scored].any():
        raise DataError(f"{where}: none of its {int(relevant.sum()):,} users with held-out items is among the samples "
                        "scored, so every metric would be 0; give the held-out items of the same users (the same "
                        "samples index)")
    results = metrics_at(items, offsets, indices, ks, n_items=catalogue)
    return Evaluation(results, catalogue, missing, threshold, source, held_out)


def read_held_out_text(path, output: Index, samples: dict[bytes, int], *, width: int, threshold: float | None,
                       drop_unknown: bool = False) -> SparseDataset:
    """Held-out DSSTNE text through the output index, rows aligned to ``samples`` (label → row;
    samples absent from it come after, as users without recommendations)."""
    data = read_labelled_text(path, output, what="output", name="held_out", width=width, samples=dict(samples),
                              analog=threshold is not None, drop_unknown=drop_unknown)
    return data.dataset


def read_held_out_netcdf(path, rows: int, width: int, *, name: str | None = None) -> SparseDataset:
    """A held-out NetCDF dataset whose rows are the input's rows, in the same order."""
    from destiny.data import read_netcdf

    found = read_netcdf(path, name)
    if len(found) > 1:
        raise UsageError(f"{path} holds {len(found)} datasets ({', '.join(d.name for d in found)}); name the "
                         "held-out one with --held-out-dataset")
    (held,) = found
    if not isinstance(held, SparseDataset):
        raise DataError(f"{path}: dataset '{held.name}' is dense; held-out items must be a sparse dataset")
    if held.n_examples != rows:
        raise DataError(f"{path}: dataset '{held.name}' has {held.n_examples:,} rows but the recommendations cover "
                        f"{rows:,}; NetCDF held-out rows must be the input's rows (the same samples index)")
    if held.n_features > width:
        raise DataError(f"{path}: dataset '{held.name}' is {held.n_features:,} wide but the output has {width:,} items")
    return held


def read_recs(path, output: Index, *, drop_unknown: bool = False) -> tuple[dict[bytes, int], np.ndarray]:
    """A recs file (``label<TAB>item,score:…``; DSSTNE's or Destiny's) → (label → row, items
    (rows, longest list) int64 in file order, −1 padding). Scores are not read: the order is the
    ranking. An item label missing from the output index is an error naming file, line and label."""
    data = read_labelled_text(path, output, what="output", name="recs", drop_unknown=drop_unknown,
                              width=max(output.n_columns, 1))
    recs = data.dataset
    lengths = np.diff(recs.offsets)
    items = np.full((recs.n_examples, max(int(lengths.max(initial=0)), 1)), -1, dtype=np.int64)
    rows = np.repeat(np.arange(recs.n_examples), lengths)
    ranks = np.arange(recs.nnz) - np.repeat(recs.offsets[:-1], lengths)
    items[rows, ranks] = recs.indices
    return dict(data.sample_index), items


def align_rows(held: SparseDataset, row_labels: list[bytes], samples: dict[bytes, int]) -> SparseDataset:
    """``held``'s rows (labelled ``row_labels``) reordered so that row ``samples[label]`` holds
    that sample; samples not in ``samples`` follow, and rows of ``samples`` absent from ``held``
    are empty."""
    from destiny.data import csr

    n = max(samples.values(), default=-1) + 1
    target = np.empty(held.n_examples, dtype=np.int64)
    for row, label in enumerate(row_labels):
        where = samples.get(label)
        if where is None:
            where = n
            n += 1
        target[row] = where
    source = np.full(n, -1, dtype=np.int64)
    source[target] = np.arange(held.n_examples)
    counts = np.where(source >= 0, np.diff(held.offsets)[np.maximum(source, 0)], 0)
    _, positions = csr.take_rows(held.offsets, source[source >= 0])
    values = None if held.values is None else held.values[positions]
    return held.replace(offsets=csr.counts_to_offsets(counts), indices=held.indices[positions], values=values,
                        weights=None)
