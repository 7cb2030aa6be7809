"""Parquet interactions → DSSTNE dataset in passes under a memory budget: the same file as the
in-memory conversion (from_pandas with sorted labels, and build_datasets' shard writer) whatever
the row order and however many passes; index files as build_datasets writes them; errors name
the file and column; ``destiny generate --from-parquet`` then ``destiny train --stream``."""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow", reason="pip install destiny[parquet] to run the Parquet tests")

from destiny.cli.main import main  # noqa: E402
from destiny.data import read_netcdf, write_netcdf  # noqa: E402
from destiny.data.index import read_index  # noqa: E402
from destiny.data.interop import from_pandas  # noqa: E402
from destiny.data.parquet import parquet_to_netcdf  # noqa: E402
from destiny.errors import DataError, DataWarning, UsageError  # noqa: E402


def interactions(n=3000, users=120, items=90, seed=0, values="half-stars"):
    """A shuffled (user, item[, rating]) table with repeated pairs; string users, integer items."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user": np.array([f"u{i}" for i in range(users)])[rng.integers(0, users, n)],
                          "item": rng.integers(0, items, n) * 7 + 1000})
    if values == "half-stars":
        frame["rating"] = rng.integers(1, 11, n) / 2
    elif values == "tenths":  # not exact in float32: float64
        frame["rating"] = rng.integers(1, 100, n) / 10
    frame = pd.concat([frame, frame.iloc[:25]], ignore_index=True)  # 25 repeats at least
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def in_memory(frame, value_col="rating"):
    """The dataset in one process: labels numbered in sorted order, each user's entries sorted by
    (item, value), repeats merged."""
    ordered = frame.sort_values(["user", "item"] + ([value_col] if value_col else []), kind="stable")
    users = {label: i for i, label in enumerate(sorted(frame["user"].unique()))}
    items = {label: i for i, label in enumerate(sorted(frame["item"].unique()))}
    with pytest.warns(DataWarning, match="merged"):
        dataset, _, _ = from_pandas(ordered, "user", "item", value_col, users=users, items=items)
    return dataset, users, items


def convert(tmp_path, frame, out="data.nc", row_group_size=400, **kwargs):
    source = tmp_path / "interactions.parquet"
    frame.to_parquet(source, row_group_size=row_group_size)
    kwargs.setdefault("value_col", "rating")
    with pytest.warns(DataWarning, match="merged .* repeated \\(user, item\\) rows"):
        report = parquet_to_netcdf(source, tmp_path / out, user_col="user", item_col="item", **kwargs)
    return report


@pytest.mark.parametrize("values", ["half-stars", "tenths", None])
def test_same_file_as_in_memory_in_one_pass_or_many(tmp_path, values):
    frame = interactions(values=values)
    value_col = "rating" if values else None
    expected, users, items = in_memory(frame, value_col)
    write_netcdf(tmp_path / "expected.nc", expected)
    one = convert(tmp_path, frame, "one.nc", value_col=value_col)
    many = convert(tmp_path, frame, "many.nc", value_col=value_col, memory_budget=2000)
    assert one.ranges == 1 and many.ranges > 5
    assert (one.n_users, one.n_items, one.nnz, one.rows) == (len(users), len(items), expected.nnz, len(frame))
    assert one.merged == len(frame) - expected.nnz >= 25
    assert one.value_dtype == (None if values is None else str(expected.values.dtype))
    reference = (tmp_path / "expected.nc").read_bytes()
    assert (tmp_path / "one.nc").read_bytes() == reference
    assert (tmp_path / "many.nc").read_bytes() == reference
    (got,) = read_netcdf(tmp_path / "many.nc")
    assert np.array_equal(got.offsets, expected.offsets) and np.array_equal(got.indices, expected.indices)


def test_same_file_and_index_files_as_build_datasets(tmp_path):
    """build_datasets' shard writer (one shard) on the same table gives the same bytes."""
    from destiny.spark.datasets import _ShardSpec, write_shard

    frame = interactions(seed=3)
    users, items = np.unique(frame["user"]), np.unique(frame["item"])
    spark_rows = pd.DataFrame({"_destiny_shard": 0, "_destiny_row": np.searchsorted(users, frame["user"]),
                               "_destiny_col": np.searchsorted(items, frame["item"]),
                               "_destiny_value": frame["rating"]})
    (tmp_path / "spark").mkdir()
    spec = _ShardSpec(str(tmp_path / "spark"), "ratings", len(users), len(items), 1, True)
    write_shard(spec, spark_rows)
    convert(tmp_path, frame, name="ratings", memory_budget=5000, index_dir=tmp_path / "idx")
    assert (tmp_path / "data.nc").read_bytes() == (tmp_path / "spark/ratings-00000-of-00001.nc").read_bytes()
    assert read_index(tmp_path / "idx/users.idx") == {str(u): i for i, u in enumerate(users)}
    assert read_index(tmp_path / "idx/items.idx") == {str(s): i for i, s in enumerate(items)}
    lines = (tmp_path / "idx/items.idx").read_text().splitlines()
    assert lines[:2] == ["1000\t0", "1007\t1"]  # integers numbered in numeric order, written as text


def test_integer_and_categorical_columns(tmp_path):
    """Integer values keep their exact type; pandas categories (dictionary columns) are decoded."""
    frame = interactions(seed=5, values=None)
    frame["rating"] = np.arange(len(frame), dtype=np.int64) * 100_000  # beyond float32: int32
    frame["user"] = frame["user"].astype("category")
    report = convert(tmp_path, frame, memory_budget=3000)
    (got,) = read_netcdf(tmp_path / "data.nc")
    assert report.value_dtype == "int32" and got.values.dtype == np.int32
    expected, _, _ = in_memory(frame.astype({"user": str}))
    assert np.array_equal(got.values, expected.values) and np.array_equal(got.indices, expected.indices)


@pytest.mark.parametrize("change,message", [
    (lambda f: f.drop(columns="rating"), "no column 'rating'; it has user, item"),
    (lambda f: f.assign(user=f["user"].where(f.index != 7, None)), "column 'user' is null in row 7"),
    (lambda f: f.assign(rating=f["rating"].where(f.index != 11, np.inf)),
     "column 'rating' holds inf in row 11; values must be finite"),
    (lambda f: f.assign(rating=f["rating"].where(f.index != 4, None)), "column 'rating' is null in row 4"),
    (lambda f: f.assign(item=f["item"] / 2), "column 'item' holds double; labels must be integers or strings"),
    (lambda f: f.assign(rating=f["user"]), "column 'rating' holds (large_)?string, not numbers"),
    (lambda f: f.iloc[:0], "the table has no rows"),
])
def test_bad_input_names_file_and_column(tmp_path, change, message):
    source = tmp_path / "bad.parquet"
    change(interactions(n=50)).to_parquet(source)
    with pytest.raises(DataError, match=message) as error:
        parquet_to_netcdf(source, tmp_path / "out.nc", user_col="user", item_col="item", value_col="rating")
    assert str(source) in str(error.value)
    assert not (tmp_path / "out.nc").exists() and list(tmp_path.iterdir()) == [source]


def test_same_column_twice_or_not_parquet(tmp_path):
    interactions(n=20).to_parquet(tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_text("user,item\n")
    with pytest.raises(DataError, match="b.parquet: cannot read it as Parquet"):
        parquet_to_netcdf(tmp_path / "b.parquet", tmp_path / "b.nc", user_col="user", item_col="item")
    with pytest.raises(UsageError, match="the user and item columns are both 'user'"):
        parquet_to_netcdf(tmp_path / "a.parquet", tmp_path / "a.nc", user_col="user", item_col="user")


def test_generate_from_parquet_then_train_streaming(tmp_path, capsys):
    frame = interactions(n=2000, users=60, items=40, values=None)
    frame.to_parquet(tmp_path / "clicks.parquet", row_group_size=300)
    out = tmp_path / "clicks.nc"
    assert main(["generate", "--from-parquet", str(tmp_path / "clicks.parquet"), "--user-column", "user",
                 "--item-column", "item", "--memory-budget", "4KB", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "2,025 rows, 60 users × 40 items" in said and "(indicator;" in said and "passes over the rows" in said
    assert read_index(tmp_path / "users.idx")["u0"] == 0 and len(read_index(tmp_path / "items.idx")) == 40
    expected, _, _ = in_memory(frame, None)
    (got,) = read_netcdf(out)
    assert np.array_equal(got.offsets, expected.offsets) and np.array_equal(got.indices, expected.indices)

    assert main(["generate", "--from-parquet", str(tmp_path / "clicks.parquet"), "--user-column", "user",
                 "-o", str(out)]) == 2
    assert "--from-parquet needs --item-column" in capsys.readouterr().err
    assert main(["generate", "--from-parquet", str(tmp_path / "clicks.parquet"), "--user-column", "user",
                 "--item-column", "item", "-f", "x.idx", "-o", str(out)]) == 2
    assert "leave out -f" in capsys.readouterr().err

    import json

    (tmp_path / "net.json").write_text(json.dumps({  # an autoencoder of the clicks
        "Version": 0.8, "ErrorFunction": "ScaledMarginalCrossEntropy",
        "Layers": [{"Name": "in", "N": "auto", "DataSet": "input", "Sparse": True},
                   {"Name": "h", "N": 8, "Activation": "Relu"},
                   {"Name": "out", "N": "auto", "DataSet": "input", "Sparse": True}]}))
    assert main(["train", "-c", str(tmp_path / "net.json"), "-i", str(out), "-o", str(out), "-n",
                 str(tmp_path / "net.nc"), "-b", "16", "-e", "1", "--device", "cpu", "--stream"]) == 0
    assert "Streaming from disk" in capsys.readouterr().out and (tmp_path / "net.nc").exists()
