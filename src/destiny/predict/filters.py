"""What may be recommended to whom: the items each example already has (filter-seen, a DSSTNE
filter file) and the catalogue (labelled columns, ``--exclude``, ``--include-only``).

DSSTNE's filter multiplied each listed item's score by the value in the filter file, so with
MovieLens timestamps it boosted the items a user had seen instead of removing them
(reference/dsstne.md §5.3, GitHub issues #66 and #130). Destiny removes them: they get −inf
before top-K, so they never take a slot, and a row with fewer eligible items than K gets fewer
recommendations rather than padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from destiny.data.dataset import SparseDataset
from destiny.errors import UsageError
from destiny.predict.inputs import PredictInput
from destiny.predict.labels import Index, column_map, map_columns, read_filter, read_item_list, union


@dataclass
class StreamingSeen:
    """The seen items of a streaming input, read batch by batch with it: the input's rows moved
    to output columns (``map_columns``), joined with ``extra`` rows (a filter file's) if any."""

    source: object  # a StreamingSparseDataset
    mapping: np.ndarray | None
    width: int
    extra: SparseDataset | None = None

    @property
    def n_examples(self) -> int:
        return self.source.n_examples

    @property
    def n_features(self) -> int:
        return self.width

    def read_rows(self, examples) -> SparseDataset:
        rows = map_columns(self.source.read_rows(examples), self.mapping, self.width)
        return rows if self.extra is None else union(rows, self.extra[np.asarray(examples, dtype=np.int64)])


@dataclass
class Filters:
    """``seen``: per example, the output columns never to recommend to it (None: none; a
    ``StreamingSeen`` for a streaming input); ``allowed``: (width,) bool, the columns that may
    be recommended at all."""

    seen: SparseDataset | StreamingSeen | None
    allowed: np.ndarray

    @property
    def catalogue(self) -> int:
        return int(self.allowed.sum())


def seen_items(network, inp: PredictInput, output: Index, width: int) -> SparseDataset:
    """The input's own items as output columns: the same label in the input and output indices
    (an autoencoder's indices hold the same labels). Without an input index the columns are
    taken as they are, which needs as many input features as output units."""
    data = inp.dataset
    if not isinstance(data, SparseDataset) and not hasattr(data, "read_rows"):
        raise UsageError(f"--filter-seen needs sparse input data; dataset '{inp.dataset_name}' is dense "
                         "(pass --no-filter-seen)")
    in_units = network.units[inp.layer]
    if inp.index is not None:
        same = inp.index.labels[:width] == output.labels[:width] and inp.index.n_columns == output.n_columns
        mapping = None if same else column_map(inp.index, output, in_units)
    elif in_units == width:
        mapping = None
    else:
        raise UsageError(f"--filter-seen: the input has {in_units:,} features and the output {width:,} items, and no "
                         "input features index (-i) says which feature is which item; pass -i or --no-filter-seen")
    if hasattr(data, "read_rows"):  # streaming: mapped batch by batch
        return StreamingSeen(data, mapping, width)
    return map_columns(data, mapping, width)


def build_filters(network, inp: PredictInput, output: Index, width: int, *, filter_seen: bool = True,
                  filter_file: str | None = None, exclude_file: str | None = None,
                  include_file: str | None = None) -> Filters:
    """The seen items and the catalogue for ``inp``: unlabelled columns (generateNetCDF's
    rounding to 128) are never recommended."""
    seen = seen_items(network, inp, output, width) if filter_seen else None
    if filter_file is not None:
        listed = read_filter(filter_file, inp.samples, inp.n_examples, output, width)
        if isinstance(seen, StreamingSeen):
            seen = StreamingSeen(seen.source, seen.mapping, width, union(seen.extra, listed))
        else:
            seen = union(seen, listed)
    allowed = output.labelled(width)
    if include_file is not None:
        only = np.zeros(width, dtype=bool)
        only[read_item_list(include_file, output, "--include-only")] = True
        allowed &= only
    if exclude_file is not None:
        allowed[read_item_list(exclude_file, output, "--exclude")] = False
    return Filters(seen, allowed)
