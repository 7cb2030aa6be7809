"""Spark front: DSSTNE datasets from a DataFrame of interactions, and batch recommendations over
a cluster's executors.

    shards = build_datasets(df, "data/", user_col="user", item_col="item")   # shards + index files
    merge_shards("data/", "data.nc", names=("input", "output"))              # one file for destiny train
    recs = recommend(df, "network.nc", 10, items_index="data/items.idx")     # DataFrame (user, item, score, rank)

Datasets: users and items get dense ids in sorted label order (the same on every run and
every cluster), the rows are split into contiguous shards and every shard is written by one
executor as an ordinary DSSTNE NetCDF file, atomically. Recommendations: every task loads the
network once and scores its users in batches with the code ``destiny predict`` runs, so the
output is the same recommendations.

pyspark is an optional dependency (``pip install destiny[spark]``, which brings pandas and
pyarrow; Spark needs Java 17+), imported only when a function here runs. Paths must be
readable (network, index files) or writable (shard directory) from every executor: a shared
filesystem on a cluster, any local path in local mode.
"""

from __future__ import annotations

from destiny.errors import ResourceError


def require_pyspark():
    """The pyspark module, or a ResourceError saying how to install it."""
    try:
        import pyspark
    except ImportError:
        raise ResourceError("destiny.spark needs pyspark, which is not installed: pip install destiny[spark] "
                            "(Spark itself needs Java 17 or newer)") from None
    return pyspark


from destiny.data.shards import ShardedDataset, merge_shards, read_shards  # noqa: E402  (no Spark needed)
from destiny.spark.datasets import build_datasets  # noqa: E402
from destiny.spark.predict import recommend  # noqa: E402

__all__ = ["ShardedDataset", "build_datasets", "merge_shards", "read_shards", "recommend", "require_pyspark"]
