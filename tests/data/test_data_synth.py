"""Synthetic MovieLens-20M-like data: statistics, determinism, and a structure worth learning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg

from destiny.cli.main import main
from destiny.data import read_dataset, split_dataset, synthesize
from destiny.errors import UsageError


@pytest.fixture(scope="module")
def users2000():
    return synthesize(2000, seed=5)


def test_statistics_look_like_movielens_20m(users2000):
    d = users2000
    assert d.dims == (27_278,) and d.n_examples == 2000 and d.is_indicator
    per_user = np.diff(d.offsets)
    assert 125 < per_user.mean() < 165  # MovieLens 20M: 144
    assert per_user.min() >= 20 and 55 < np.median(per_user) < 100  # floor 20, median 68
    assert per_user.max() > 1000  # a log-normal tail of very active users
    per_item = np.sort(np.bincount(d.indices, minlength=d.n_features))[::-1]
    assert 0.2 < per_item[0] / d.n_examples < 0.6  # the most popular item: ≈ half the users
    top_share = per_item[:273].sum() / d.nnz  # top 1% of the items
    assert 0.15 < top_share < 0.5
    for row in (0, 999, 1999):  # distinct, sorted items a user
        items = d.row(row)[0]
        assert np.all(np.diff(items) > 0)
    d.validate()


def test_deterministic_per_seed(users2000):
    again = synthesize(2000, seed=5)
    np.testing.assert_array_equal(again.offsets, users2000.offsets)
    np.testing.assert_array_equal(again.indices, users2000.indices)
    other = synthesize(2000, seed=6)
    assert not np.array_equal(other.indices[:1000], users2000.indices[:1000])


def _recall_at_20(scores, train, test, users):
    scores = scores.copy()
    scores[train[users].nonzero()] = -np.inf  # never recommend what was seen
    top = np.argpartition(-scores, 20, axis=1)[:, :20]
    held = test[users].toarray()
    hits = np.take_along_axis(held, top, axis=1).sum(axis=1)
    return float(np.mean(hits / np.maximum(np.minimum(held.sum(axis=1), 20), 1)))


@pytest.mark.parametrize("topic_share, model_wins", [(0.7, True), (0.0, False)])
def test_planted_tastes_let_a_model_beat_popularity(topic_share, model_wins):
    """A rank-32 SVD beats popularity on held-out items only when tastes are planted."""
    data = synthesize(1500, 6000, seed=5, topic_share=topic_share, mean_items=60)
    train_set, test_set = split_dataset(data, 0.2, seed=0)
    train, test = train_set.to_scipy(np.float64), test_set.to_scipy()
    users = np.arange(0, 1500, 3)
    popularity = np.asarray(train.sum(axis=0)).ravel()
    u, s, vt = scipy.sparse.linalg.svds(train, k=32, random_state=0)
    pop = _recall_at_20(np.tile(popularity, (len(users), 1)), train, test, users)
    svd = _recall_at_20((u[users] * s) @ vt, train, test, users)
    assert (svd > 1.2 * pop) == model_wins, (svd, pop)


def test_small_item_sets_stay_sparse():
    d = synthesize(100, 200, seed=1)
    assert np.diff(d.offsets).mean() <= 200 / 8 * 1.5 and d.indices.max() < 200
    with pytest.raises(UsageError, match="mean items per user"):
        synthesize(10, 100, mean_items=80)


def test_synth_cli_writes_train_and_test(tmp_path, capsys):
    out = tmp_path / "s.nc"
    assert main(["synth", "--users", "300", "--items", "1000", "--seed", "2", "-o", str(out), "--split", "0.2"]) == 0
    train, test = read_dataset(out, "input"), read_dataset(tmp_path / "s.test.nc", "input")
    assert train.n_examples == test.n_examples == 300 and train.dims == (1000,)
    assert test.nnz / (train.nnz + test.nnz) == pytest.approx(0.2, abs=0.02)
    assert "300 users × 1,000 items" in capsys.readouterr().out
    assert main(["synth", "--users", "5", "--items", "100", "--seed", "1", "--density", "0.6",
                 "-o", str(tmp_path / "x.nc")]) == 2
    assert not (tmp_path / "x.nc").exists()
