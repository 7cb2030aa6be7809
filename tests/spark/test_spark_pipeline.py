"""destiny.spark in local mode: a DataFrame of interactions → dataset shards and index files
equal to building the dataset in one process; shards → destiny train → recommendations on
Spark equal to ``destiny predict``'s on the merged shards; errors that name the column or item."""

from __future__ import annotations

import json

import numpy as np
import pytest

from destiny.cli.main import main
from destiny.data import read_index, read_netcdf, synthesize, to_pandas
from destiny.data.shards import ShardedDataset, read_shards
from destiny.errors import DataError, DataWarning, ResourceError, UsageError

CONFIG = {"Version": 0.8, "ErrorFunction": "ScaledMarginalCrossEntropy",
          "Layers": [{"Name": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
                     {"Name": "Hidden", "N": 24, "Activation": "Relu"},
                     {"Name": "Output", "N": "auto", "DataSet": "output", "Sparse": True}]}


def test_without_pyspark_the_error_says_how_to_install(monkeypatch):
    import sys

    from destiny.spark import build_datasets

    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ResourceError, match=r"pip install destiny\[spark\]"):
        build_datasets(None, "unused")


def _ratings():
    """Interactions with integer users, string items, a repeated pair and float values."""
    import pandas as pd

    rng = np.random.default_rng(5)
    pairs = rng.choice(40 * 25, size=400, replace=False)
    users = pairs // 25 * 7  # sparse integer labels: sorted numerically
    items = np.array([f"item-{i:02d}" for i in pairs % 25])
    values = rng.integers(1, 11, size=400) / 2
    frame = pd.DataFrame({"uid": users, "sku": items, "stars": values})
    return pd.concat([frame, frame.iloc[:3]], ignore_index=True)  # 3 repeated (user, item) pairs


def _expected(frame):
    """The dataset built in one process: labels sorted, items in column order, repeats summed."""
    users, items = np.unique(frame["uid"]), np.unique(frame["sku"])
    summed = frame.groupby(["uid", "sku"], as_index=False)["stars"].sum()
    rows = np.searchsorted(users, summed["uid"])
    cols = np.searchsorted(items, summed["sku"])
    order = np.lexsort((cols, rows))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(users)))])
    return users, items, offsets, cols[order], summed["stars"].to_numpy()[order]


def test_build_datasets_equals_one_process(spark, tmp_path):
    from destiny.spark import build_datasets

    frame = _ratings()
    users, items, offsets, indices, values = _expected(frame)
    df = spark.createDataFrame(frame)
    with pytest.warns(DataWarning, match="merged 3 repeated"):
        manifest = build_datasets(df, tmp_path, user_col="uid", item_col="sku", value_col="stars", shards=3)
    assert (manifest.n_rows, manifest.n_columns, manifest.nnz) == (len(users), len(items), len(indices))
    assert ShardedDataset.read(tmp_path) == manifest
    assert [s.first_row for s in manifest.shards] == [0, len(users) // 3, 2 * len(users) // 3]
    assert read_index(tmp_path / "users.idx") == {str(u): i for i, u in enumerate(users)}
    assert read_index(tmp_path / "items.idx") == {str(s): i for i, s in enumerate(items)}
    for path, shard in zip(manifest.paths, manifest.shards):  # each shard a DSSTNE file of its rows
        (part,) = read_netcdf(path)
        assert (part.name, part.n_examples, part.dims) == ("input", shard.rows, (len(items),))
    whole = read_shards(tmp_path)
    assert np.array_equal(whole.offsets, offsets) and np.array_equal(whole.indices, indices)
    np.testing.assert_array_equal(whole.values, values.astype(np.float32))

    with pytest.warns(DataWarning, match="merged 3 repeated"):  # rebuilt with fewer shards: the others go
        build_datasets(df, tmp_path, user_col="uid", item_col="sku", value_col="stars", shards=2)
    assert sorted(p.name for p in tmp_path.glob("input-*.nc")) == ["input-00000-of-00002.nc",
                                                                   "input-00001-of-00002.nc"]
    again = read_shards(tmp_path)
    assert np.array_equal(again.offsets, offsets) and np.array_equal(again.indices, indices)


def test_build_datasets_errors_name_the_column(spark, tmp_path):
    from destiny.spark import build_datasets

    df = spark.createDataFrame([(1, "a", 1.0), (2, None, 2.0)], "user long, item string, value double")
    with pytest.raises(DataError, match="no column 'rating'; it has user, item, value"):
        build_datasets(df, tmp_path, value_col="rating")
    with pytest.raises(DataError, match="1 interactions have a null 'user', 'item'"):
        build_datasets(df, tmp_path)
    with pytest.raises(UsageError, match="shards must be a positive integer, not 0"):
        build_datasets(df, tmp_path, shards=0)
    with pytest.raises(DataError, match="column 'item' holds double; labels must be integers or strings"):
        build_datasets(df.selectExpr("user", "value AS item"), tmp_path)


def assert_same_recommendations(expected, got, tol=1e-6):
    """Same users, ranks and scores (within float32 rounding: the batches differ), and the same
    item at every rank except between scores that rounding can order either way."""
    expected = expected.sort_values(["user", "rank"]).reset_index(drop=True)
    got = got.sort_values(["user", "rank"]).reset_index(drop=True)
    assert len(got) == len(expected)
    assert (got["user"].to_numpy() == expected["user"].to_numpy()).all()
    assert (got["rank"].to_numpy() == expected["rank"].to_numpy()).all()
    np.testing.assert_allclose(got["score"].to_numpy(), expected["score"].to_numpy(), rtol=tol, atol=tol)
    differ = np.flatnonzero(got["item"].to_numpy() != expected["item"].to_numpy())
    by_user = expected.set_index(["user", "item"])["score"]
    for at in differ:  # a near-tie: the other item has (nearly) this rank's score for this user
        row = got.iloc[at]
        assert abs(by_user[(row["user"], row["item"])] - row["score"]) <= 2 * tol, f"{row.to_dict()} differs"
    return len(differ)


def test_spark_pipeline_recommends_as_destiny_predict(spark, tmp_path):
    import pandas as pd

    from destiny.spark import build_datasets, merge_shards, recommend

    data = synthesize(1000, 400, seed=3, mean_items=20)  # ≈ 20k interactions
    frame = to_pandas(data, [f"user{u}" for u in range(data.n_examples)], np.arange(400) * 10)
    df = spark.createDataFrame(frame)
    manifest = build_datasets(df, tmp_path / "shards", shards=3)
    assert (manifest.n_rows, manifest.n_columns, manifest.nnz) == (1000, 400, data.nnz)
    merge_shards(tmp_path / "shards", tmp_path / "data.nc", names=("input", "output"))
    (tmp_path / "net.json").write_text(json.dumps(CONFIG))
    assert main(["train", "-c", str(tmp_path / "net.json"), "-i", str(tmp_path / "data.nc"), "-o",
                 str(tmp_path / "data.nc"), "-n", str(tmp_path / "net.nc"), "-b", "64", "-e", "2", "--optimizer",
                 "adam", "--alpha", "0.01", "--quiet", "--device", "cpu"]) == 0
    index = str(tmp_path / "shards" / "items.idx")
    assert main(["predict", "-n", str(tmp_path / "net.nc"), "--input-nc", str(tmp_path / "data.nc"), "--samples",
                 str(tmp_path / "shards" / "users.idx"), "-i", index, "-o", index, "-k", "10", "--format", "csv",
                 "-s", str(tmp_path / "recs.csv"), "--device", "cpu", "--quiet"]) == 0
    expected = pd.read_csv(tmp_path / "recs.csv", dtype={"user": str, "item": str})

    got = recommend(df, tmp_path / "net.nc", 10, items_index=index, batch_size=100).toPandas()
    assert list(got.columns) == ["user", "item", "score", "rank"] and len(got) == 10_000
    assert_same_recommendations(expected, got)


def test_recommend_unknown_items(spark, tmp_path):
    from destiny.spark import build_datasets, merge_shards, recommend

    df = spark.createDataFrame([("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c")], "user string, item string")
    build_datasets(df, tmp_path, shards=1)
    merge_shards(tmp_path, tmp_path / "data.nc", names=("input", "output"))
    (tmp_path / "net.json").write_text(json.dumps(CONFIG))
    assert main(["train", "-c", str(tmp_path / "net.json"), "-i", str(tmp_path / "data.nc"), "-o",
                 str(tmp_path / "data.nc"), "-n", str(tmp_path / "net.nc"), "-e", "1", "--quiet", "--device",
                 "cpu"]) == 0
    new = spark.createDataFrame([("u3", "a"), ("u3", "zz")], "user string, item string")
    with pytest.raises(Exception, match="item 'zz' of user 'u3' is not in .*items.idx"):
        recommend(new, tmp_path / "net.nc", 2, items_index=tmp_path / "items.idx").collect()
    rows = recommend(new, tmp_path / "net.nc", 2, items_index=tmp_path / "items.idx", drop_unknown=True).collect()
    assert sorted(row["item"] for row in rows) == ["b", "c"]  # 'a' is seen, 'zz' skipped
    assert [row["rank"] for row in sorted(rows, key=lambda r: r["rank"])] == [1, 2]
