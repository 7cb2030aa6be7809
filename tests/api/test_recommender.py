"""destiny.Recommender follows the scikit-learn / implicit estimator contract."""

from __future__ import annotations

import numpy as np
import torch
import pytest

from destiny.errors import NotFittedError, UsageError
from destiny.recommender import Recommender
from tests.helpers import clustered_dataset

SMALL = {"Layers": [{"Name": "in", "N": "auto", "DataSet": "in", "Sparse": True},
                    {"Name": "h", "N": 16, "Activation": "Relu"},
                    {"Name": "out", "N": "auto", "DataSet": "out", "Sparse": True}],
         "ErrorFunction": "ScaledMarginalCrossEntropy",
         "ScaledMarginalCrossEntropy": {"oneTarget": 1.0, "zeroTarget": 0.0}}


@pytest.fixture(scope="module")
def user_items():
    import scipy.sparse as sp

    d = clustered_dataset(120, 40, seed=3)
    return sp.csr_matrix((np.ones(len(d.indices), np.float32), d.indices, d.offsets), shape=(120, 40))


@pytest.fixture(scope="module")
def model(user_items):
    return Recommender(SMALL, epochs=2, batch_size=32, alpha=0.01).fit(user_items)


def test_init_only_stores_and_fit_returns_self(user_items):
    m = Recommender(SMALL, epochs=1, batch_size=32)
    assert not hasattr(m, "network_") and m.get_params()["epochs"] == 1
    assert m.fit(user_items) is m
    assert m.n_items_ == 40 and m.n_users_ == 120 and len(m.history_) == 1


def test_unfitted_use_is_a_clear_error(user_items):
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        Recommender().recommend(0, user_items[0])
    with pytest.raises(AttributeError):  # NotFittedError is also an AttributeError, as in scikit-learn
        Recommender().similar_items(0)


def test_batch_equals_single_calls_and_seen_items_are_filtered(model, user_items):
    users = np.arange(10)
    ids, scores = model.recommend(users, user_items[users], N=5)
    assert ids.shape == (10, 5)
    for u in users:
        one_ids, one_scores = model.recommend(int(u), user_items[u], N=5)
        np.testing.assert_array_equal(one_ids, ids[u])  # the same items, in the same order
        # scores to the last bit but for the BLAS kernel, which may sum a 1-row product differently
        np.testing.assert_allclose(one_scores, scores[u], rtol=1e-6)
        assert not set(one_ids) & set(user_items[u].indices)
    whole_ids, _ = model.recommend(users, user_items, N=5)  # rows taken from the whole matrix
    np.testing.assert_array_equal(whole_ids, ids)


def test_filters_and_item_subsets(model, user_items):
    ids, _ = model.recommend(0, user_items[0], N=40, filter_items=[1, 3, 5])
    assert not {1, 3, 5} & set(ids[ids >= 0])
    ids, _ = model.recommend(0, user_items[0], N=5, items=[0, 2, 4, 6], filter_already_liked_items=False)
    assert set(ids[ids >= 0]) <= {0, 2, 4, 6}
    ids, scores = model.recommend(0, user_items[0], N=10, items=[7])  # one eligible item at most
    assert (ids[1:] == -1).all() and np.isneginf(scores[1:]).all()


def test_similar_items_starts_with_the_item(model):
    ids, scores = model.similar_items(3, N=4)
    assert ids[0] == 3 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(scores) <= 1e-7)
    batch_ids, _ = model.similar_items([3, 4], N=4)
    np.testing.assert_array_equal(batch_ids[0], ids)


def test_save_and_load_give_the_same_recommendations(model, user_items, tmp_path):
    model.save(tmp_path / "model.nc")
    again = Recommender.load(tmp_path / "model.nc")
    assert again.get_params() == {**model.get_params(), "config": again.config}
    np.testing.assert_array_equal(again.recommend(np.arange(5), user_items[:5])[0],
                                  model.recommend(np.arange(5), user_items[:5])[0])


def test_evaluate_reports_metrics(model, user_items):
    result = model.evaluate(user_items, user_items, k=[5, 10])
    assert set(result) == {5, 10} and 0.0 <= result[10]["ndcg"] <= 1.0


def test_bad_arguments(model, user_items):
    with pytest.raises(UsageError, match="exactly one Input and one Output layer"):
        Recommender({"Layers": [{"N": 3, "DataSet": "a"}, {"N": 2, "Kind": "Hidden"}]}).fit(user_items)
    with pytest.raises(UsageError, match="scipy sparse matrix"):
        model.recommend(0, [[1, 0, 1]])
    with pytest.raises(UsageError, match="no parameter 'epoch'"):
        Recommender().set_params(epoch=3)


# -- validation-driven fitting --------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted():
    """Planted-taste users (destiny.data.synth), 20% of each user's items held out."""
    import scipy.sparse as sp

    from destiny.data.synth import synthesize

    d = synthesize(240, 120, seed=2, mean_items=16)
    users = np.repeat(np.arange(240), np.diff(d.offsets))
    held = np.random.default_rng(0).random(len(d.indices)) < 0.2
    ones = np.ones(len(d.indices), np.float32)
    part = lambda m: sp.csr_matrix((ones[m], (users[m], d.indices[m])), shape=(240, 120))  # noqa: E731
    return part(~held), part(held)


PLANTED = {"Layers": [{"Name": "in", "N": "auto", "DataSet": "in", "Sparse": True},
                      {"Name": "h", "N": 24, "Activation": "Sigmoid"},
                      {"Name": "out", "N": "auto", "DataSet": "out", "Sparse": True}],
           "ErrorFunction": "ScaledMarginalCrossEntropy"}


def test_fit_with_validation_stops_at_the_best_epoch_and_beats_the_untrained_net(planted, tmp_path):
    train, held = planted
    params = dict(batch_size=32, alpha=0.01, device="cpu", patience=2, monitor="ndcg@50")
    model = Recommender(PLANTED, epochs=25, refit=False, **params).fit(train, validation=held)
    history = model.history_
    assert not model.refit_
    assert model.best_epoch_ is not None and len(history) < 25  # stopped by the patience
    scores = [h["metrics"]["ndcg@50"] for h in history]
    assert model.best_epoch_ == 1 + int(np.argmax(scores)) and len(history) == model.best_epoch_ + 2
    assert {"ndcg@100", "recall@100", "recall_min@100", "precision@10", "ndcg@50"} == set(history[0]["metrics"])
    assert all(h["validation_error"] is not None for h in history) and history[-1]["best_epoch"] == model.best_epoch_
    # the weights are the best epoch's: scoring the fitted model gives the best validation number
    assert model.evaluate(held, train, k=50)[50]["ndcg"] == pytest.approx(max(scores), rel=1e-12)
    untrained = Recommender(PLANTED, epochs=0, **params).fit(train)
    assert max(scores) > untrained.evaluate(held, train, k=50)[50]["ndcg"] + 0.05
    model.save(tmp_path / "m.nc")
    again = Recommender.load(tmp_path / "m.nc")
    assert again.best_epoch_ == model.best_epoch_ and again.get_params()["patience"] == 2
    assert again.get_params()["monitor"] == "ndcg@50" and again.get_params()["validate_every"] == 1


def test_fit_with_validation_refits_the_chosen_epochs_on_train_and_validation(planted):
    """refit (the default): the epochs chosen on validation, trained again from the start on
    train ∪ validation — the same network as Recommender(epochs=best_epoch_) fitted on the
    union — keeping the selection's history, best epoch and score."""
    import scipy.sparse as sp

    train, held = planted
    params = dict(batch_size=32, alpha=0.01, device="cpu", patience=2, monitor="ndcg@50")
    chosen = Recommender(PLANTED, epochs=25, refit=False, **params).fit(train, validation=held)
    model = Recommender(PLANTED, epochs=25, **params).fit(train, validation=held)
    assert model.refit_ and model.best_epoch_ == chosen.best_epoch_ >= 1
    assert [h["metrics"] for h in model.history_] == [h["metrics"] for h in chosen.history_]
    assert model.best_score_ == chosen.best_score_
    assert model.best_score_ == max(h["metrics"]["ndcg@50"] for h in chosen.history_)
    union = (sp.csr_matrix(train) + sp.csr_matrix(held)).minimum(1).tocsr()
    want = Recommender(PLANTED, epochs=chosen.best_epoch_, **params).fit(union)
    for name, p in want.network_.named_parameters():
        assert torch.equal(p, dict(model.network_.named_parameters())[name]), name


def test_new_parameters_and_their_errors(planted):
    train, held = planted
    assert {"monitor", "patience", "validate_every"} <= set(Recommender().get_params())
    assert Recommender().set_params(patience=None).patience is None
    assert Recommender(PLANTED, epochs=1, batch_size=64).fit(train).best_epoch_ is None  # no validation: no stopping
    with pytest.raises(UsageError, match="unknown ranking metric"):
        Recommender(PLANTED, epochs=1, monitor="ndgc@10").fit(train, validation=held)
    with pytest.raises(UsageError, match="positive integer"):
        Recommender(PLANTED, epochs=1, monitor="ndcg@0").fit(train, validation=held)
    with pytest.raises(UsageError, match="patience"):
        Recommender(PLANTED, epochs=1, patience=-1).fit(train, validation=held)
    with pytest.raises(UsageError, match="positive number of epochs"):
        Recommender(PLANTED, epochs=1, validate_every=0).fit(train, validation=held)
    with pytest.raises(UsageError, match="the same users"):
        Recommender(PLANTED, epochs=1).fit(train, validation=held[:10])
