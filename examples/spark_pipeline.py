"""Spark end to end: 1M synthetic interactions in a DataFrame → DSSTNE dataset shards (one per
executor) → ``destiny train`` on the merged shards → recommendations on Spark's executors,
checked against single-process ``destiny predict``.

    python examples/spark_pipeline.py [--master local[2]] [--users 20000 --mean-items 51]

Needs ``pip install destiny[spark]`` and Java 17+. Prints each stage's wall time and whether
the Spark recommendations equal ``destiny predict``'s: the same users, ranks and items, and
scores equal to float32 rounding (the two score different batches of users, so a matrix
product may round differently; an item may then swap places only with one of (nearly) equal
score, and the script counts those).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from destiny.cli.main import run


def compare(expected, got, tol: float = 1e-6) -> tuple[float, int]:
    """(largest score difference, items swapped between near-equal scores); SystemExit if the
    recommendations differ otherwise."""
    expected = expected.sort_values(["user", "rank"]).reset_index(drop=True)
    got = got.sort_values(["user", "rank"]).reset_index(drop=True)
    if len(got) != len(expected) or not (got["user"].to_numpy() == expected["user"].to_numpy()).all() \
            or not (got["rank"].to_numpy() == expected["rank"].to_numpy()).all():
        raise SystemExit(f"different users or ranks: {len(got):,} rows from Spark, {len(expected):,} from predict")
    gap = np.abs(got["score"].to_numpy(np.float64) - expected["score"].to_numpy(np.float64))
    if gap.max() > tol:
        raise SystemExit(f"scores differ by up to {gap.max():.3g}")
    differ = np.flatnonzero(got["item"].to_numpy() != expected["item"].to_numpy())
    by_user = expected.set_index(["user", "item"])["score"]
    for at in differ:
        row = got.iloc[at]
        if abs(by_user.get((row["user"], row["item"]), np.inf) - row["score"]) > 2 * tol:
            raise SystemExit(f"user {row['user']}: rank {row['rank']} is {row['item']} on Spark, "
                             f"{expected['item'].iat[at]} from destiny predict")
    return float(gap.max()), len(differ)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--master", default="local[2]", help="Spark master (default: %(default)s)")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--mean-items", type=float, default=51.0, help="interactions a user (default: 51 → 1M)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--workdir", default="spark-work")
    args = parser.parse_args(argv)

    from pyspark.sql import SparkSession

    from destiny.data import synthesize, to_pandas
    from destiny.spark import build_datasets, merge_shards, recommend

    work = os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)
    path = lambda name: os.path.join(work, name)  # noqa: E731
    times = {}

    def stage(name, started):
        times[name] = time.perf_counter() - started
        print(f"  {name}: {times[name]:.1f} s", flush=True)

    started = time.perf_counter()
    spark = (SparkSession.builder.master(args.master).appName("destiny-spark-pipeline")
             .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "8")
             .config("spark.driver.memory", "2g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    stage("Spark session", started)

    started = time.perf_counter()
    data = synthesize(args.users, args.items, seed=7, mean_items=args.mean_items)
    frame = to_pandas(data, [f"user{u}" for u in range(data.n_examples)], np.arange(args.items) + 100_000)
    df = spark.createDataFrame(frame).repartition(8).persist()
    print(f"{len(frame):,} interactions of {data.n_examples:,} users over {args.items:,} items "
          f"in {df.rdd.getNumPartitions()} partitions")
    stage("synthetic DataFrame", started)

    started = time.perf_counter()
    manifest = build_datasets(df, path("shards"), shards=args.shards)
    print(f"{len(manifest.shards)} shards, {manifest.n_rows:,} rows × {manifest.n_columns:,} columns, "
          f"{manifest.nnz:,} nonzeros; {manifest.rows_index_path}, {manifest.columns_index_path}")
    stage("build_datasets (ids, index files, shards)", started)

    started = time.perf_counter()
    merge_shards(path("shards"), path("data.nc"), names=("input", "output"))
    stage("merge_shards", started)

    config = {"Version": 0.8, "ErrorFunction": "ScaledMarginalCrossEntropy",
              "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
                         {"Name": "Hidden", "N": args.hidden, "Activation": "Relu"},
                         {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True}]}
    with open(path("network.json"), "w") as out:
        json.dump(config, out)
    started = time.perf_counter()
    run("train", "-c", path("network.json"), "-i", path("data.nc"), "-o", path("data.nc"), "-n", path("network.nc"),
        "-b", 256, "-e", args.epochs, "--optimizer", "adam", "--alpha", 0.002, "--device", "cpu", "--force",
        "--quiet")
    stage("destiny train", started)

    started = time.perf_counter()
    index = manifest.columns_index_path
    run("predict", "-n", path("network.nc"), "--input-nc", path("data.nc"), "--samples", manifest.rows_index_path,
        "-i", index, "-o", index, "-k", args.k, "--format", "csv", "-s", path("recs.csv"), "--device", "cpu")
    stage("destiny predict (one process)", started)

    import pandas as pd

    started = time.perf_counter()
    recs = recommend(df, path("network.nc"), args.k, items_index=index).toPandas()
    stage("destiny.spark.recommend (collected)", started)

    expected = pd.read_csv(path("recs.csv"), dtype={"user": str, "item": str})
    gap, swapped = compare(expected, recs)
    print(f"Spark recommendations equal destiny predict's: {len(recs):,} rows, scores within {gap:.2g}, "
          f"{swapped} items swapped between near-equal scores")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
