"""A DataFrame of (user, item[, value]) interactions → DSSTNE dataset shards and index files.

Ids: the distinct users (rows) and items (columns) are sorted by label and numbered from 0
(an RDD ``sortBy`` then ``zipWithIndex``: the sort's range bounds are fixed when it is defined,
so every pass over it numbers the labels alike), the same on every run whatever the
partitioning. The driver streams both index files (``users.idx``, ``items.idx``, DSSTNE's
``label<TAB>index`` lines) as the ids arrive.

Shards: the interactions, joined to their ids, are grouped by shard: shard s holds rows
⌊n·s/N⌋ to ⌊n·(s+1)/N⌋ (``shard_bounds``' rule). Each group is one pandas frame on one
executor, which sorts it by (row, item), merges repeated (user, item) pairs (indicator: one
entry; values: summed) and writes the shard with ``write_netcdf`` (atomic: a retried task
replaces, never corrupts). A shard must fit in an executor's memory: about 16 bytes an
interaction, 24 with values; the default shard count keeps shards near 8M interactions.
"""

from __future__ import annotations

import math
import operator
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from destiny.data import csr
from destiny.data.dataset import SparseDataset, exact_values
from destiny.data.index import write_index_pairs as _write_index
from destiny.data.shards import Shard, ShardedDataset, shard_file
from destiny.errors import DataError, DataWarning, UsageError
from destiny.spark import require_pyspark

INTERACTIONS_PER_SHARD = 8_000_000
_ROW, _COL, _VALUE, _SHARD = "_destiny_row", "_destiny_col", "_destiny_value", "_destiny_shard"


def build_datasets(interactions, directory: str | os.PathLike, *, user_col: str = "user", item_col: str = "item",
                   value_col: str | None = None, name: str = "input", shards: int | None = None) -> ShardedDataset:
    """Write ``interactions`` (a Spark DataFrame) as DSSTNE dataset shards in ``directory``.

    Writes ``{name}-SSSSS-of-NNNNN.nc`` (one sparse dataset ``name``, users × items, rows in
    user-id order), ``users.idx`` (the samples index: user label → row), ``items.idx`` (the
    features index: item label → column; an autoencoder's input and output index) and
    ``shards.json``; shard files of an earlier build with another shard count are removed.
    Labels (integer or string columns) are written as text. ``value_col``: None writes an
    indicator dataset; else its numbers, kept exactly (``exact_values``). ``shards``: default
    the larger of Spark's default parallelism and interactions / 8M, at most the user count.

    Returns the manifest (``destiny.data.ShardedDataset``): read the shards with
    ``read_shards``, or ``merge_shards`` them into one file for ``destiny train``. The
    DataFrame is read four times (checks, users, items, shards): cache it if it is costly.
    """
    require_pyspark()
    directory = os.fspath(directory)
    if shards is not None and shards < 1:
        raise UsageError(f"shards must be a positive integer, not {shards}")
    if not name or os.sep in name or any(c in name for c in "\t\n\r"):
        raise UsageError(f"name {name!r} must be a non-empty DataSet name without path separators or line breaks")
    total = _check_frame(interactions, user_col, item_col, value_col)
    spark = interactions.sparkSession
    os.makedirs(directory, exist_ok=True)
    cached = []
    try:
        users, rdd, n_users = _numbered(interactions, user_col, os.path.join(directory, "users.idx"), "user")
        cached.append(rdd)
        items, rdd, n_items = _numbered(interactions, item_col, os.path.join(directory, "items.idx"), "item")
        cached.append(rdd)
        if shards is None:
            shards = max(spark.sparkContext.defaultParallelism, math.ceil(total / INTERACTIONS_PER_SHARD))
        shards = min(shards, n_users)
        spec = _ShardSpec(directory, name, n_users, n_items, shards, value_col is not None)
        written = _write_shards(interactions, users, items, spec, user_col, item_col, value_col)
    finally:
        for rdd in cached:
            rdd.unpersist()
    manifest = ShardedDataset(directory, name, n_users, n_items, sum(s.nnz for s in written), tuple(written),
                              merged_duplicates=total - sum(s.nnz for s in written))
    manifest.write_manifest()
    _remove_stale(directory, name, {s.file for s in written})
    if manifest.merged_duplicates:
        how = "one entry kept" if value_col is None else "values summed"
        warnings.warn(f"{directory}: merged {manifest.merged_duplicates:,} repeated (user, item) interactions "
                      f"({how})", DataWarning, stacklevel=2)
    return manifest


def _check_frame(frame, user_col: str, item_col: str, value_col: str | None) -> int:
    """The interaction count, after checking columns, types and that no label or value is null."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if user_col == item_col:
        raise UsageError(f"user_col and item_col are both '{user_col}'; give the users and items as two columns")
    fields = {field.name: field.dataType for field in frame.schema.fields}
    for column in (user_col, item_col) + ((value_col,) if value_col else ()):
        if column not in fields:
            raise DataError(f"the DataFrame has no column '{column}'; it has {', '.join(fields)}")
    for column in (user_col, item_col):
        if not isinstance(fields[column], (T.IntegralType, T.StringType)):
            raise DataError(f"column '{column}' holds {fields[column].simpleString()}; labels must be integers or "
                            "strings (cast it)")
    bad = F.col(user_col).isNull() | F.col(item_col).isNull()
    if value_col is not None:
        kind = fields[value_col]
        if not isinstance(kind, (T.NumericType, T.BooleanType)):
            raise DataError(f"column '{value_col}' holds {kind.simpleString()}, not numbers")
        bad = bad | F.col(value_col).isNull()
        if isinstance(kind, (T.FloatType, T.DoubleType)):
            bad = bad | F.isnan(value_col) | F.col(value_col).isin(float("inf"), float("-inf"))
    counts = frame.agg(F.count(F.lit(1)).alias("n"), F.sum(bad.cast("long")).alias("bad")).first()
    if counts["bad"]:
        what = f"'{user_col}', '{item_col}'" + (f" or '{value_col}'" if value_col else "")
        raise DataError(f"{counts['bad']:,} interactions have a null {what}"
                        + (" or a non-finite value" if value_col else "") + "; drop or fill them first")
    if not counts["n"]:
        raise DataError("the DataFrame has no interactions; DSSTNE cannot load an empty dataset")
    return int(counts["n"])


def _numbered(frame, column: str, index_path: str, what: str):
    """(DataFrame (column, id), its cached RDD, count): the distinct labels numbered in sorted
    order; writes the index file on the way."""
    from pyspark.sql import types as T

    labels = frame.select(column).distinct().rdd.map(operator.itemgetter(0))
    parts = frame.sparkSession.sparkContext.defaultParallelism
    ids = labels.sortBy(lambda label: label, numPartitions=parts).zipWithIndex().persist()
    count = _write_index(index_path, ids.toLocalIterator(prefetchPartitions=True), what)
    schema = T.StructType([T.StructField(column, frame.schema[column].dataType, False),
                           T.StructField(_ROW if what == "user" else _COL, T.LongType(), False)])
    return frame.sparkSession.createDataFrame(ids, schema), ids, count


@dataclass(frozen=True)
class _ShardSpec:
    """What every executor needs to write its shard (shipped with the task)."""

    directory: str
    name: str
    n_rows: int
    n_columns: int
    shards: int
    valued: bool

    def path(self, shard: int) -> str:
        return os.path.join(self.directory, shard_file(self.name, shard, self.shards))


def _write_shards(interactions, users, items, spec: _ShardSpec, user_col: str, item_col: str,
                  value_col: str | None) -> list[Shard]:
    from pyspark.sql import functions as F

    joined = interactions.join(users, user_col).join(items, item_col)
    columns = [F.col(_ROW), F.col(_COL)] + ([F.col(value_col).alias(_VALUE)] if value_col else [])
    shard = F.expr(f"({spec.shards} * ({_ROW} + 1) - 1) div {spec.n_rows}").alias(_SHARD)
    grouped = joined.select(shard, *columns).groupBy(_SHARD)
    schema = "shard long, first_row long, rows long, nnz long"
    written = grouped.applyInPandas(lambda frame: write_shard(spec, frame), schema).collect()
    found = sorted((row["shard"], row) for row in written)
    if [s for s, _ in found] != list(range(spec.shards)):
        raise DataError(f"{spec.directory}: executors wrote shards {[s for s, _ in found]} of 0..{spec.shards - 1}; "
                        "rerun build_datasets")
    return [Shard(shard_file(spec.name, s, spec.shards), row["first_row"], row["rows"], row["nnz"])
            for s, row in found]


def write_shard(spec: _ShardSpec, frame):
    """On an executor: one shard's (row, column[, value]) frame → its NetCDF file; returns a
    one-row frame (shard, first_row, rows, nnz)."""
    import pandas as pd

    from destiny.data.netcdf_write import write_netcdf
    from destiny.parallel.shards import shard_bounds

    shard = int(frame[_SHARD].iat[0])
    first, stop = shard_bounds(spec.n_rows, spec.shards, shard)
    rows = frame[_ROW].to_numpy(np.int64) - first
    cols = frame[_COL].to_numpy(np.int64)
    values = frame[_VALUE].to_numpy() if spec.valued else None
    # (row, column) order, ties by value: the same file whatever order Spark delivered the rows in
    order = np.lexsort((cols, rows) if values is None else (values, cols, rows))
    counts = np.bincount(rows, minlength=stop - first)
    if len(counts) != stop - first or not counts.all():
        raise DataError(f"shard {shard}: rows {first}..{stop - 1} should each have interactions; the id join lost "
                        "some (a label changed between passes?): rerun build_datasets")
    dataset = SparseDataset(spec.name, (spec.n_columns,), csr.counts_to_offsets(counts), cols[order],
                            None if values is None else exact_values(values[order]))
    dataset, _ = dataset.deduplicate()
    write_netcdf(spec.path(shard), dataset)
    return pd.DataFrame({"shard": [shard], "first_row": [first], "rows": [stop - first], "nnz": [dataset.nnz]})


def _remove_stale(directory: str, name: str, keep: set[str]) -> None:
    """Delete shard files of ``name`` that an earlier build with another shard count left."""
    pattern = re.compile(re.escape(name) + r"-\d{5}-of-\d{5}\.nc")
    for entry in os.listdir(directory):
        if pattern.fullmatch(entry) and entry not in keep:
            os.remove(os.path.join(directory, entry))


__all__ = ["build_datasets", "write_shard"]
