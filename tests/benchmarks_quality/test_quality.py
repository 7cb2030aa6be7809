"""The quality benchmark's loaders, scorer and peers (benchmarks/quality*.py, peers.py) on tiny
synthetic data: splits, cleaning, the one scorer against a brute force, EASE against its closed
form, determinism of iALS and BPR, the tuning driver and the JSON writer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import peers  # noqa: E402
import quality  # noqa: E402
import quality_data as qd  # noqa: E402
import quality_score as qs  # noqa: E402

from destiny.predict.metrics import ranking_metrics  # noqa: E402


def _random_csr(users, items, density, seed):
    m = sp.random(users, items, density=density, random_state=seed, format="csr")
    m.data[:] = 1
    return m.astype(np.float32)


# -- splits -------------------------------------------------------------------------------------

def test_holdout_sizes_disjoint_seeded():
    lengths = [1, 2, 3, 4, 5, 10, 14, 15, 40]
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.concatenate([np.arange(n) * 2 for n in lengths])
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(lengths), 100))
    kept, held = qd.holdout(m, 0.2, seed=7, salt=1)
    # max(1, ⌊0.2 n + ½⌋) for n ≥ 3, none for 1 or 2 items
    assert np.diff(held.indptr).tolist() == [0, 0, 1, 1, 1, 2, 3, 3, 8]
    assert kept.multiply(held).nnz == 0
    assert ((kept + held) != m).nnz == 0
    again_kept, again_held = qd.holdout(m, 0.2, seed=7, salt=1)
    assert (again_held != held).nnz == 0 and (again_kept != kept).nnz == 0
    _, other = qd.holdout(m, 0.2, seed=8, salt=1)
    assert (other != held).nnz > 0  # another seed draws other items
    assert held.dtype == np.float32 and set(held.data.tolist()) == {1.0}


def test_finish_drops_overlaps_and_counts_them():
    shape = (3, 6)
    train, _ = qd._pairs_matrix([0, 0, 1, 2], [0, 1, 2, 3], shape)
    valid, _ = qd._pairs_matrix([0, 1, 2], [1, 4, 5], shape)  # (0, 1) is also in train
    test, dups = qd._pairs_matrix([0, 0, 1, 2, 2], [0, 2, 4, 5, 5], shape)  # (0,0) in train; (1,4),(2,5) in valid
    assert dups == 1
    split = qd._finish("t", train, valid, test, seed=0, notes={})
    assert split.notes["validation_pairs_in_train_dropped"] == 1
    assert split.notes["test_pairs_in_train_dropped"] == 1
    assert split.notes["test_pairs_in_validation_dropped"] == 2
    assert sorted(zip(*split.test.nonzero())) == [(0, 2)]
    assert split.full.nnz == train.nnz + split.validation.nnz == 6
    assert split.summary()["test_users"] == 1


def test_lightgcn_lines_compacted(tmp_path):
    (tmp_path / "movielens-1m-implicit").mkdir()
    (tmp_path / "movielens-1m-implicit/train.txt").write_text("0 10 30 30 50\n1 10 70 90\n2 30\n")
    (tmp_path / "movielens-1m-implicit/test.txt").write_text("0 70\n1 50 10\n")
    split = qd.load("ml-1m", tmp_path, seed=0)
    assert split.shape == (3, 5)  # items 10, 30, 50, 70, 90 → columns 0..4
    assert split.notes["train_duplicates_dropped"] == 1
    assert split.notes["test_pairs_in_train_dropped"] == 1  # (1, 10)
    assert sorted(zip(*split.test.nonzero())) == [(0, 3), (1, 2)]
    assert split.full.nnz == 7


def test_missing_data_says_where(tmp_path):
    with pytest.raises(ValueError, match="--data"):
        qd.load("lastfm", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        qd.load("nope", tmp_path)


# -- the scorer ---------------------------------------------------------------------------------

def _brute_top(scores: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    out = np.full((len(scores), k), -1)
    for u, row in enumerate(scores):
        masked = [(-s, i) for i, s in enumerate(row) if i not in set(seen[u].indices)]
        masked.sort()  # score descending, then the lower id
        ids = [i for _, i in masked[:k]]
        out[u, :len(ids)] = ids
    return out


def test_score_matches_brute_force_with_ties():
    rng = np.random.default_rng(3)
    users, items = 37, 130
    raw = rng.integers(0, 5, size=(users, items)).astype(np.float32)  # many equal scores
    train = _random_csr(users, items, 0.1, 1)
    test = _random_csr(users, items, 0.05, 2)
    test = sp.csr_matrix(test - test.multiply(train))
    test.eliminate_zeros()
    got = qs.score(lambda u: torch.as_tensor(raw[u]), train, test, batch=5)
    brute = _brute_top(raw, train, qs.TOP)
    users_ = qs.scored_users(test)
    held = test[users_]
    for name, k, attr in qs.REPORTED:
        want = getattr(ranking_metrics(brute[users_], held.indptr, held.indices, k=k), attr)
        assert got[name] == pytest.approx(want, abs=1e-12), name
    # ranked ids give the same numbers; seen items in them are refused
    assert qs.score(brute, train, test) == got
    leaky = _brute_top(raw, sp.csr_matrix(train.shape, dtype=np.float32), qs.TOP)
    with pytest.raises(ValueError, match="training items"):
        qs.score(leaky, train, test)


def test_score_hand_example():
    # one user, items 0..119; scores fall with the id; test items 0, 1 and 50; item 0 seen in train
    train = sp.csr_matrix((np.ones(1, np.float32), ([0], [0])), shape=(1, 120))
    test = sp.csr_matrix((np.ones(2, np.float32), ([0, 0], [1, 50])), shape=(1, 120))
    got = qs.score(lambda u: torch.arange(120, 0, -1, dtype=torch.float32).expand(len(u), -1), train, test)
    # ranking: 1, 2, 3, … (0 removed): item 1 at rank 1, item 50 at rank 50
    assert got["P@10"] == pytest.approx(0.1)
    assert got["Recall@20"] == pytest.approx(0.5)
    assert got["NDCG@100"] == pytest.approx((1 + 1 / np.log2(51)) / (1 + 1 / np.log2(3)))


# -- peers --------------------------------------------------------------------------------------

def test_ease_equals_closed_form_with_empty_items():
    x = _random_csr(40, 25, 0.2, 4).tolil()
    x[:, [3, 17]] = 0  # items without training data
    x = x.tocsr()
    x.eliminate_zeros()
    lam = 7.0
    g = (x.T @ x).toarray().astype(np.float64)
    p = np.linalg.inv(g + lam * np.eye(25))
    b = np.eye(25) - p / np.diag(p)[None, :]
    want = x.toarray() @ b
    ease = peers.EASE("float64")
    fn = ease.fit(x, {"lam": lam}, device="cpu", seed=0, threads=1)
    got = fn(np.arange(40)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-10)
    assert np.all(got[:, [3, 17]] == 0)


def _planted(users=120, items=60, seed=0):
    """Users in 4 groups, each liking mostly its own 15 items."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 4, users)
    likes = rng.random((users, items)) < np.where(np.arange(items)[None, :] // 15 == group[:, None], 0.5, 0.03)
    m = sp.csr_matrix(likes.astype(np.float32))
    train, test = qd.holdout(m, 0.2, seed, 1)
    train, validation = qd.holdout(train, 0.1, seed, 2)
    return qd.Split("planted", train, validation, test)


@pytest.mark.parametrize("cls,params", [(peers.IALS, {"factors": 8, "regularization": 0.1, "alpha": 5.0,
                                                      "iterations": 4}),
                                        (peers.BPR, {"factors": 8, "learning_rate": 0.05, "regularization": 0.01,
                                                     "iterations": 20})])
def test_factorizations_repeat(cls, params):
    pytest.importorskip("implicit")
    split = _planted()
    first = cls().fit(split.full, params, device="cpu", seed=3, threads=2)(np.arange(5))
    second = cls().fit(split.full, params, device="cpu", seed=3, threads=2)(np.arange(5))
    assert torch.equal(first, second)
    assert first.shape == (5, 60) and torch.isfinite(first).all()


def test_tune_and_test_beats_popularity_and_repeats():
    pytest.importorskip("optuna")
    pytest.importorskip("implicit")
    split = _planted()
    pop = peers.tune_and_test(peers.Popular(), split, trials=1, budget_s=None)
    ease = peers.tune_and_test(peers.EASE(), split, trials=3, budget_s=None, seed=1)
    again = peers.tune_and_test(peers.EASE(), split, trials=3, budget_s=None, seed=1)
    assert len(ease.trials) == 3 and ease.trials[0]["params"] == {"lam": 500.0}  # the default goes first
    assert ease.params == again.params and ease.test == again.test
    assert ease.test["NDCG@100"] > pop.test["NDCG@100"] + 0.1
    assert 0 < ease.validation <= 1 and ease.tune_s > 0
    ials = peers.tune_and_test(peers.IALS(), split, trials=2, budget_s=None, threads=2)
    assert 1 <= ials.params["iterations"] <= peers.IALS.max_iterations
    assert ials.test["NDCG@100"] > pop.test["NDCG@100"]


def test_ease_skips_when_memory_is_short(monkeypatch):
    monkeypatch.setattr(peers, "free_bytes", lambda device: 1000)
    with pytest.raises(peers.Skip, match="GiB"):
        peers.EASE().check(_planted(), "cpu")


def test_write_json_atomic(tmp_path):
    path = tmp_path / "sub" / "r.json"
    quality.write_json(str(path), {"a": 1, "b": np.float32(0.5)})
    assert json.loads(path.read_text()) == {"a": 1, "b": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


# -- the real datasets (skipped where ../shared/data is absent) ---------------------------------

SHAPES = {"ml-1m": (6040, 3706), "ml-latest-small": (610, 9724), "lastfm": (1892, 17632),
          "ml-20m-1024": (1024, 26744), "citeulike": (5551, 16980), "gowalla": (29858, 40981),
          "amazon-beauty": (52204, 57289)}
PAIRS = {"ml-1m": 1_000_209, "ml-latest-small": 100_836, "lastfm": 92_834, "ml-20m-1024": 153_511,
         "citeulike": 210_504, "gowalla": 1_027_370, "amazon-beauty": 394_908}


@pytest.mark.parametrize("name", list(SHAPES))
def test_real_dataset_protocol(shared_data, name):
    split = qd.load(name, shared_data, seed=0)
    assert split.shape == SHAPES[name]
    for m in (split.train, split.validation, split.test):
        assert m.shape == split.shape and m.dtype == np.float32 and np.all(m.data == 1)
    # the README's pair counts: every unique pair lands in exactly one part
    assert split.train.nnz + split.validation.nnz + split.test.nnz == PAIRS[name]
    assert split.train.multiply(split.validation).nnz == 0 and split.full.multiply(split.test).nnz == 0
    share = split.validation.nnz / split.full.nnz
    assert 0.08 < share < 0.13, share  # ~10%: a valid file or the 10% hold-out


# -- Destiny's row --------------------------------------------------------------------------------

def test_destiny_row_follows_the_tune_contract(monkeypatch):
    """With a ``destiny.tune`` (here a stand-in keeping its contract), the final fit is
    Recommender(**best_params_) on train ∪ validation, scored by the same scorer."""
    import destiny

    split = _planted()
    calls = {}

    def fake_tune(train, validation, *, budget_s, device=None, seed=0):
        calls.update(train=train, validation=validation, budget_s=budget_s, device=device, seed=seed)
        model = destiny.Recommender(epochs=2, device=device, seed=5).fit(train)
        model.best_params_ = {**model.get_params(), "epochs": 2}
        model.trials_ = [{"value": 0.1}]
        return model

    monkeypatch.setattr(destiny, "tune", fake_tune)
    row = quality.run_destiny(split, device="cpu", budget_s=7, seed=3)
    assert calls["train"] is split.train and calls["validation"] is split.validation
    assert (calls["budget_s"], calls["device"], calls["seed"]) == (7, "cpu", 3)
    assert row["params"]["epochs"] == 2 and row["trials"] == [{"value": 0.1}]
    assert row["tuned_by"] == "destiny.tune"
    want = destiny.Recommender(epochs=2, device="cpu", seed=5).fit(split.full)
    ids, _ = want.recommend(np.arange(split.shape[0]), split.full, N=qs.TOP)
    assert row["test"] == qs.score(ids, split.full, split.test)
    assert 0 <= row["validation"] <= 1


def test_default_row_is_the_plain_recommender():
    """``default``: Recommender().fit(train, validation=) as it comes — the epochs chosen on
    validation, then trained again on train ∪ validation — recommending from train ∪
    validation, scored once on the test."""
    import destiny

    split = _planted()
    row = quality.run_default(split, device="cpu", seed=3)
    want = destiny.Recommender(device="cpu", seed=3).fit(split.train, validation=split.validation)
    assert want.refit_ and row["params"]["refit"]
    ids, _ = want.recommend(np.arange(split.shape[0]), split.full, N=qs.TOP)
    assert row["test"] == qs.score(ids, split.full, split.test)
    assert row["params"]["best_epoch"] == want.best_epoch_ >= 1 and row["tuned_by"] == "Recommender() defaults"
    assert set(qs.REPORTED_NAMES) <= set(row["test"]) and row["validation"] == want.best_score_
    chosen = destiny.Recommender(device="cpu", seed=3, refit=False).fit(split.train, validation=split.validation)
    final = destiny.Recommender(epochs=chosen.best_epoch_, device="cpu", seed=3).fit(split.full)
    assert chosen.best_epoch_ == want.best_epoch_ and not chosen.refit_
    assert np.array_equal(final.recommend(np.arange(split.shape[0]), split.full, N=qs.TOP)[0], ids)
