"""Batch recommendations on Spark: ``mapInPandas`` over users, one network load a task.

The interactions are hash-partitioned by user and sorted within each partition, so a user's
rows arrive together (possibly across two Arrow batches: the last user of a batch is held back
until the next one). Each task loads the network and the index files once, then turns every
batch of users into a SparseDataset through the features index, builds the same filters as
``destiny predict`` (the user's own items, ``exclude``, ``include_only``, unlabelled columns) and
runs the same ``iter_recommendations``. Items of a user are fed in column order, as the shards
of ``build_datasets`` store them, so scores equal those of ``destiny predict`` on the merged
shards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from destiny.errors import DataError, UsageError
from destiny.spark import require_pyspark

SCHEMA = "user string, item string, score float, rank int"


@dataclass(frozen=True)
class _ScoreSpec:
    """What every task needs (shipped with it); paths as the executors see them."""

    network: str
    items_index: str
    output_index: str
    user_col: str
    item_col: str
    value_col: str | None
    k: int
    layer: str | None
    dataset: str | None
    filter_seen: bool
    exclude: str | None
    include_only: str | None
    drop_unknown: bool
    batch_size: int
    chunk: int | None
    device: str
    threads: int | None


def recommend(interactions, network: str | os.PathLike, k: int, *, items_index: str | os.PathLike,
              output_index: str | os.PathLike | None = None, user_col: str = "user", item_col: str = "item",
              value_col: str | None = None, layer: str | None = None, dataset: str | None = None,
              filter_seen: bool = True, exclude: str | os.PathLike | None = None,
              include_only: str | os.PathLike | None = None, drop_unknown: bool = False, batch_size: int = 1024,
              chunk: int | None = None, device: str = "cpu", threads: int | None = 1,
              partitions: int | None = None):
    """The top-``k`` items for every user of ``interactions`` (a Spark DataFrame of the users'
    (user, item[, value]) histories): a DataFrame (user string, item string, score float, rank
    int from 1), ``destiny predict``'s recommendations row for row.

    network: a network file; items_index: the input features index (``items.idx`` of
    ``build_datasets``) that maps item labels to input columns; output_index: the output's
    (default: the same, as for an autoencoder). value_col: fed to the network (analog input);
    None feeds every listed item as 1. Items not in the index are a DataError unless
    ``drop_unknown``. filter_seen, exclude, include_only (files of item labels), layer,
    dataset, batch_size, chunk: as ``destiny predict``'s options. threads: torch threads a task
    (Spark runs a task a core; None leaves torch's default). partitions: tasks (default: Spark's
    default parallelism); each loads the network once.
    """
    require_pyspark()
    if k < 1:
        raise UsageError(f"k must be a positive integer, not {k}")
    if batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, not {batch_size}")
    for what, path in (("network", network), ("items_index", items_index), ("output_index", output_index),
                       ("exclude", exclude), ("include_only", include_only)):
        if path is not None and not os.path.exists(path):
            raise UsageError(f"{what} {os.fspath(path)} does not exist (executors read it too: give a path on a "
                             "filesystem every executor sees)")
    columns = [user_col, item_col] + ([value_col] if value_col else [])
    missing = [c for c in columns if c not in interactions.columns]
    if missing:
        raise DataError(f"the DataFrame has no column '{missing[0]}'; it has {', '.join(interactions.columns)}")
    spec = _ScoreSpec(os.path.abspath(network), os.path.abspath(items_index),
                      os.path.abspath(output_index or items_index), user_col, item_col, value_col, k, layer, dataset,
                      filter_seen, _absolute(exclude), _absolute(include_only), drop_unknown, batch_size, chunk,
                      device, threads)
    partitions = partitions or interactions.sparkSession.sparkContext.defaultParallelism
    frame = interactions.select(*columns).repartition(partitions, user_col).sortWithinPartitions(user_col)
    return frame.mapInPandas(lambda batches: score_partition(spec, batches), SCHEMA)


def _absolute(path) -> str | None:
    return None if path is None else os.path.abspath(path)


def score_partition(spec: _ScoreSpec, batches):
    """On an executor: the recommendations of a partition's users, a frame per batch of users;
    a user's rows must be contiguous (the partition sorted by user)."""
    import pandas as pd

    scorer = _Scorer(spec)  # the network, once a task
    held = None  # the last user of the previous batch: its rows may go on in the next one
    for frame in batches:
        if held is not None:
            frame = pd.concat([held, frame], ignore_index=True)
        if frame.empty:
            continue
        last = frame[spec.user_col].iat[-1]
        tail = (frame[spec.user_col] == last).to_numpy()
        held = frame[tail]
        if not tail.all():
            yield scorer.score(frame[~tail])
    if held is not None and len(held):
        yield scorer.score(held)


class _Scorer:
    """The network, indices and output labels of one task; ``score`` a frame of users."""

    def __init__(self, spec: _ScoreSpec):
        import torch

        from destiny.backend import resolve_device
        from destiny.predict.inputs import input_layer
        from destiny.predict.labels import Index
        from destiny.predict.topk import output_layer
        from destiny.train.checkpoint import load_network

        if spec.threads is not None:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.network = load_network(spec.network, device=resolve_device(spec.device))
        self.input = input_layer(self.network, spec.dataset)
        if len(self.network.input_layers()) > 1:
            raise UsageError(f"{spec.network}: the network has {len(self.network.input_layers())} Input layers; "
                             "destiny.spark.recommend feeds one: score it with destiny predict --input-nc")
        self.units = self.network.units[self.input.name]
        self.layer = output_layer(self.network, spec.layer)
        self.width = self.network.units[self.layer.name]
        self.items = Index.read(spec.items_index)
        self.items.check_units(self.units, self.input.name, "input features")
        self.output = self.items if spec.output_index == spec.items_index else Index.read(spec.output_index)
        self.output.check_units(self.width, self.layer.name, "output features")
        self.column_of = {label.decode("utf-8", "surrogateescape"): column
                          for label, column in self.items.by_label.items()}
        self.item_names = np.asarray([None if label is None else label.decode("utf-8", "surrogateescape")
                                      for label in self.output.label_array(self.width)], dtype=object)

    def _dataset(self, frame):
        """(SparseDataset of the frame's users in order of appearance, their labels as text)."""
        import pandas as pd

        from destiny.data import csr
        from destiny.data.dataset import SparseDataset, exact_values

        spec = self.spec
        if frame[spec.user_col].isna().any():
            raise DataError(f"column '{spec.user_col}' holds a null user; drop those rows first")
        user_rows, users = pd.factorize(frame[spec.user_col], sort=False)
        columns = frame[spec.item_col].astype(str).map(self.column_of)
        unknown = columns.isna().to_numpy()
        if unknown.any():
            if not spec.drop_unknown:
                at = int(np.argmax(unknown))
                raise DataError(f"item '{frame[spec.item_col].iat[at]}' of user '{frame[spec.user_col].iat[at]}' is "
                                f"not in {spec.items_index}; score only items the network was trained with, or "
                                "pass drop_unknown=True to skip them")
        known = ~unknown
        rows, cols = user_rows[known], columns.to_numpy()[known].astype(np.int64)
        values = frame[spec.value_col].to_numpy()[known] if spec.value_col else None
        order = np.lexsort((cols, rows))  # each user's items in column order, as the shards hold them
        offsets = csr.counts_to_offsets(np.bincount(rows, minlength=len(users)))
        dataset = SparseDataset(self.input.dataset, (self.units,), offsets, cols[order],
                                None if values is None else exact_values(values[order]))
        dataset, _ = dataset.deduplicate()
        return dataset, [str(user) for user in users]

    def score(self, frame):
        """The recommendations (user, item, score, rank) of a frame of whole users."""
        import pandas as pd

        from destiny.data.index import ENCODING
        from destiny.predict.filters import build_filters
        from destiny.predict.inputs import PredictInput
        from destiny.predict.recommend import iter_recommendations

        spec = self.spec
        dataset, users = self._dataset(frame)
        labels = [user.encode(*ENCODING) for user in users]
        inp = PredictInput({dataset.name: dataset}, self.input.name, dataset.name, labels,
                           {label: row for row, label in enumerate(labels)}, self.items)
        filters = build_filters(self.network, inp, self.output, self.width, filter_seen=spec.filter_seen,
                                exclude_file=spec.exclude, include_file=spec.include_only)
        parts = []
        for rows, scores, items in iter_recommendations(self.network, inp.datasets, spec.k, exclude=filters.seen,
                                                        include_only=filters.allowed, layer=self.layer.name,
                                                        batch_size=spec.batch_size, chunk=spec.chunk,
                                                        device=self.network.device):
            valid = items >= 0
            ranks = np.broadcast_to(np.arange(1, spec.k + 1, dtype=np.int32), items.shape)
            parts.append(pd.DataFrame({"user": np.repeat(np.asarray(users[rows], dtype=object), valid.sum(1)),
                                       "item": self.item_names[items[valid]],
                                       "score": scores[valid].astype(np.float32),
                                       "rank": ranks[valid]}))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            {"user": [], "item": [], "score": np.array([], np.float32), "rank": np.array([], np.int32)})


__all__ = ["SCHEMA", "recommend", "score_partition"]
