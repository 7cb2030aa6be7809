"""Ratings tables → interactions → seeded splits → datasets, and `destiny convert`."""

from __future__ import annotations

import numpy as np
import pytest

from destiny.cli.main import main
from destiny.data import (
    read_dataset, read_index, read_interactions, read_text, split_dataset, split_interactions, synthesize,
    to_datasets,
)
from destiny.data.convert import Interactions, keep_ratings
from destiny.errors import DataError

ROWS = [(1, 10, 4.0, 1000), (1, 20, 2.5, 1003), (2, 10, 5.0, 1001), (1, 30, 3.0, 1002), (3, 40, 1.0, 999)]


def _ratings(rng_seed=0, users=50, per_user=20):
    rng = np.random.default_rng(rng_seed)
    users_ = np.repeat(np.arange(1, users + 1), per_user)
    items = np.concatenate([rng.choice(500, per_user, replace=False) for _ in range(users)])
    return Interactions(users_, items, rng.integers(1, 6, len(items)).astype(float),
                        rng.permutation(len(items)).astype(np.int64))


@pytest.mark.parametrize("name, content", [
    ("ratings.csv", "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in ROWS)),
    ("u.data", "".join(f"{u}\t{i}\t{int(r) if r == int(r) else r}\t{t}\n" for u, i, r, t in ROWS)),
    ("ratings.dat", "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ROWS)),
    ("mine.csv", "".join(f"{u};{i};{r};{t}\r\n" for u, i, r, t in ROWS)),
])
def test_reads_movielens_formats_and_generic_tables(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    got = read_interactions(tmp_path / name)
    assert got.users.tolist() == [u for u, *_ in ROWS] and got.items.tolist() == [i for _, i, *_ in ROWS]
    assert got.ratings.tolist() == [r for *_, r, _ in ROWS] and got.timestamps.tolist() == [t for *_, t in ROWS]


def test_named_columns_string_ids_and_bad_rows(tmp_path):
    (tmp_path / "t.csv").write_text("when,who,what\n5,alice,b07\n6,bob,x\n")
    got = read_interactions(tmp_path / "t.csv", columns={"user": "who", "item": "what", "timestamp": "when"})
    assert got.users.tolist() == ["alice", "bob"] and got.items.tolist() == ["b07", "x"]
    assert got.timestamps.tolist() == [5, 6] and got.ratings is None
    (tmp_path / "bad.csv").write_text("u,i,r\n1,2,3\n1,3,x\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: rating 'x' is not a number"):
        read_interactions(tmp_path / "bad.csv")
    (tmp_path / "short.csv").write_text("1,2,3\n1\n")
    with pytest.raises(DataError, match=r"short\.csv:2: 1 fields, expected at least 3"):
        read_interactions(tmp_path / "short.csv")
    with pytest.raises(DataError, match="no column named 'rate' for the rating"):
        read_interactions(tmp_path / "t.csv", columns={"user": "who", "item": "what", "rating": "rate"})


def test_minimum_rating():
    kept = keep_ratings(_ratings(), 4.0)
    assert kept.ratings.min() >= 4.0 and 0 < len(kept) < 1000


@pytest.mark.parametrize("method", ["random", "user", "time"])
def test_splits_are_deterministic_disjoint_and_sized(method):
    data = _ratings()
    test = split_interactions(data, method, 0.2, seed=7)
    assert test.dtype == bool and test.sum() == 200  # 20 a user × 0.2, or 0.2 × 1000
    np.testing.assert_array_equal(test, split_interactions(data, method, 0.2, seed=7))
    assert not np.array_equal(test, split_interactions(data, method, 0.2, seed=8)) or method == "time"
    if method != "random":
        assert np.all(np.bincount(data.users[test])[1:] == 4)
    if method == "time":  # each user's 4 latest interactions
        for user in (1, 17, 50):
            mine = data.users == user
            assert data.timestamps[mine & test].min() > data.timestamps[mine & ~test].max()


def test_datasets_from_a_split_line_up():
    data = _ratings()
    test = split_interactions(data, "user", 0.2, seed=1)
    converted = to_datasets(data, [~test, test], values="rating")
    train, held = converted.datasets
    assert train.n_examples == held.n_examples == 50 and train.dims == held.dims
    assert train.nnz + held.nnz == 1000
    for row in (0, 21, 49):
        assert not set(train.row(row)[0].tolist()) & set(held.row(row)[0].tolist())
    assert converted.user_labels[0] == 1 and train.values.dtype == np.float32


def test_split_dataset_per_example():
    dataset = synthesize(300, 400, seed=2)
    train, test = split_dataset(dataset, 0.25, seed=3)
    assert train.n_examples == test.n_examples == 300 and train.nnz + test.nnz == dataset.nnz
    counts = np.diff(dataset.offsets)
    np.testing.assert_array_equal(np.diff(test.offsets), np.floor(counts * 0.25 + 0.5))
    again = split_dataset(dataset, 0.25, seed=3)[1]
    np.testing.assert_array_equal(again.indices, test.indices)
    for row in (0, 150, 299):
        whole = dataset.row(row)[0].tolist()
        parts = train.row(row)[0].tolist() + test.row(row)[0].tolist()
        assert sorted(parts) == whole  # disjoint, nothing lost; each part keeps the row's order


def test_convert_cli_ratings_to_netcdf_and_text(tmp_path, capsys):
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in ROWS))
    assert main(["convert", str(tmp_path / "ratings.csv"), "-o", str(tmp_path / "train.nc"), "--min-rating", "3",
                 "--split", "user", "--test-fraction", "0.5", "--seed", "1",
                 "--test-output", str(tmp_path / "test.nc")]) == 0
    assert read_index(tmp_path / "features_input") == {"10": 0, "30": 1}
    assert read_index(tmp_path / "samples_input") == {"1": 0, "2": 1}
    train, test = read_dataset(tmp_path / "train.nc", "input"), read_dataset(tmp_path / "test.nc", "input")
    assert train.dims == test.dims == (128,) and train.nnz + test.nnz == 3
    assert main(["convert", str(tmp_path / "ratings.csv"), "-o", str(tmp_path / "ml.txt"),
                 "--values", "timestamp"]) == 0
    # DSSTNE's convert_ratings.awk output: item,timestamp per user, in file order
    assert (tmp_path / "ml.txt").read_text() == "1\t10,1000:20,1003:30,1002\n2\t10,1001\n3\t40,999\n"
    assert read_text(tmp_path / "ml.txt", analog=True).dataset.nnz == 5


def test_convert_cli_usage_errors(tmp_path, capsys):
    (tmp_path / "u.data").write_text("1\t2\t3\t4\n")
    assert main(["convert", str(tmp_path / "u.data"), "-o", str(tmp_path / "o.nc"), "--split", "user"]) == 2
    assert "--split needs --test-output PATH" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "u.data"), "-o", str(tmp_path / "o.nc"), "--min-rating", "4"]) == 2
    assert "no interactions left (of 1) with a rating of at least 4.0" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.data"]


@pytest.mark.parametrize("name", ["movielens-100k/u.data", "movielens-latest-small/ratings.csv"])
def test_real_movielens_files(shared_data, name):
    path = shared_data / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    data = read_interactions(path)
    assert len(data) == {"movielens-100k/u.data": 100_000, "movielens-latest-small/ratings.csv": 100_836}[name]
    test = split_interactions(data, "time", 0.2, seed=0)
    converted = to_datasets(data, [~test, test])
    assert sum(d.nnz for d in converted.datasets) == len(data)


def test_convert_cli_netcdf_input(tmp_path, capsys):
    from destiny.data import SparseDataset, write_netcdf

    data = synthesize(40, 300, seed=4)
    write_netcdf(tmp_path / "two.nc", [data, SparseDataset("output", (4,), [0, 1], [1])])
    assert main(["convert", str(tmp_path / "two.nc"), "-o", str(tmp_path / "a.txt")]) == 2
    assert "holds 2 datasets (input, output); choose one with -d NAME" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "two.nc"), "-d", "input", "-o", str(tmp_path / "train.nc"),
                 "--split", "user", "--test-output", str(tmp_path / "test.nc"), "--seed", "3"]) == 0
    train, test = read_dataset(tmp_path / "train.nc", "input"), read_dataset(tmp_path / "test.nc", "input")
    expected_train, expected_test = split_dataset(data, 0.2, seed=3)
    np.testing.assert_array_equal(train.indices, expected_train.indices)
    np.testing.assert_array_equal(test.offsets, expected_test.offsets)
    assert main(["convert", str(tmp_path / "two.nc"), "-d", "input", "-o", str(tmp_path / "t.nc"),
                 "--split", "time", "--test-output", str(tmp_path / "u.nc")]) == 2
    assert "--split time needs a ratings table" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "test.nc"), "-o", str(tmp_path / "test.txt")]) == 0
    first = (tmp_path / "test.txt").read_text().split("\n")[0]
    row, features = first.split("\t")
    assert [int(f) for f in features.split(":")] == test.row(int(row))[0].tolist()  # numbers as labels
