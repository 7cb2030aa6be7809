"""The Python API: recommend_batch / predict_batch / as_batch over every kind of x."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch

from destiny.data import SparseDataset
from destiny.errors import UsageError
from destiny.predict.api import as_batch, predict_batch, recommend_batch
from tests.predict.helpers import brute_top_k, exact_network, exact_scores


@pytest.fixture
def data():
    rng = np.random.default_rng(4)
    rows = [sorted(rng.choice(40, size=int(rng.integers(1, 6)), replace=False).tolist()) for _ in range(9)]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows)
    csr = scipy.sparse.csr_matrix((np.ones(len(indices)), indices, offsets), shape=(9, 40))
    return rows, csr, SparseDataset("whatever", (40,), offsets, indices)


def test_every_kind_of_x_gives_the_brute_force(data):
    rows, csr, dataset = data
    net = exact_network(40, 5, 40, "Sigmoid", seed=8)
    want = brute_top_k(exact_scores(net, rows), 6, [set(r) for r in rows])
    batch = as_batch(net, csr)["Input"]
    for x in (csr, dataset, batch, {"Input": dataset}, {"input": csr}, csr.toarray()):
        seen = None if not isinstance(x, np.ndarray) else csr  # dense x: say what was seen
        got = recommend_batch(net, x, 6, seen=seen, batch_size=4, chunk=9)
        assert got.items.tolist() == want, type(x)


def test_predict_batch_equals_network_predict(data):
    rows, csr, dataset = data
    net = exact_network(40, 5, 40, "Tanh", seed=2)
    dense = predict_batch(net, csr, batch_size=2)["Output"]
    np.testing.assert_array_equal(dense, net.predict(as_batch(net, dataset))["Output"].numpy())
    hidden = predict_batch(net, dataset, ["Hidden"])["Hidden"]
    assert hidden.shape == (9, 5)


def test_narrow_sparse_x_is_widened_and_misuse_is_explained(data):
    rows, csr, _ = data
    net = exact_network(128, 5, 128, "Sigmoid", seed=1)  # generateNetCDF's rounded width
    got = recommend_batch(net, csr, 3, include_only=np.arange(40))
    assert (got.items < 40).all() and not any(set(g) & set(r) for g, r in zip(got.items.tolist(), rows))
    with pytest.raises(UsageError, match="dense|sparse"):
        recommend_batch(net, np.zeros((2, 128)), 3)
    with pytest.raises(UsageError, match="300 features"):
        recommend_batch(net, scipy.sparse.csr_matrix((2, 300)), 3)
    with pytest.raises(UsageError, match="outside"):
        recommend_batch(net, csr, 3, exclude=[500])
    narrow = exact_network(40, 5, 30, "Sigmoid")
    with pytest.raises(UsageError, match="filter_seen"):
        recommend_batch(narrow, csr, 3)
    assert recommend_batch(narrow, csr, 3, filter_seen=False).items.shape == (9, 3)
    assert torch.equal(as_batch(net, {"Input": torch.zeros(2, 128)})["Input"], torch.zeros(2, 128))
