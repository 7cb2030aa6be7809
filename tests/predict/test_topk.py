"""Chunked top-K against a brute force that sorts every row by (−score, item): every output
activation, real ties (exact integer networks), exclusion, include-only, K past the width,
NaN scores, any chunk size, and the same answer for every batch split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from destiny.errors import UsageError
from destiny.ops.sparse import SparseBatch
from destiny.predict.topk import top_k, top_k_scores
from tests.predict.helpers import brute_top_k, exact_network, exact_scores

ACTIVATIONS = {
    "Sigmoid": torch.sigmoid, "Linear": lambda z: z, "Relu": torch.relu, "Tanh": torch.tanh,
    "SoftMax": lambda z: torch.softmax(z, dim=1),
}


def batch_of(rows: list[list[int]], width: int) -> SparseBatch:
    offsets = torch.tensor(np.concatenate([[0], np.cumsum([len(r) for r in rows])]), dtype=torch.int64)
    indices = torch.tensor([i for r in rows for i in r], dtype=torch.int64)
    return SparseBatch(offsets, indices, None, width)


def random_rows(rng, users: int, width: int, most: int = 5) -> list[list[int]]:
    return [sorted(rng.choice(width, size=int(rng.integers(0, most + 1)), replace=False).tolist())
            for _ in range(users)]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_top_k_equals_brute_force_with_real_ties(activation, chunk):
    rng = np.random.default_rng(len(activation) + (chunk or 0))
    net = exact_network(40, 6, 90, activation, seed=3)
    rows = random_rows(rng, 23, 40)
    z = exact_scores(net, rows)
    scores = ACTIVATIONS[activation](torch.tensor(z, dtype=torch.float32)).numpy()
    rank_by = scores if activation == "Relu" else z  # strictly increasing ones rank by pre-activation
    assert any(len(set(r)) < len(r) / 2 for r in rank_by)  # the case has many ties
    for k in (1, 4, 30, 90, 200):
        got = top_k(net, {"Input": batch_of(rows, 40)}, k, chunk=chunk)
        want = brute_top_k(rank_by, k)
        for u in range(len(rows)):
            n = len(want[u])
            assert got.items[u, :n].tolist() == want[u]
            assert (got.items[u, n:] == -1).all() and torch.isneginf(got.scores[u, n:]).all()
            rtol = 2e-5 if activation == "SoftMax" else 1e-6  # float64 activation of the picked vs float32
            np.testing.assert_allclose(got.scores[u, :n].numpy(), scores[u, want[u]], rtol=rtol)


@pytest.mark.parametrize("chunk", [5, 33, None])
def test_exclude_and_include_only_remove_items(chunk):
    rng = np.random.default_rng(1)
    net = exact_network(30, 5, 70, "Sigmoid", seed=5)
    rows = random_rows(rng, 15, 30)
    seen = random_rows(rng, 15, 70, most=40)
    allowed = rng.random(70) < 0.6
    z = exact_scores(net, rows)
    got = top_k(net, {"Input": batch_of(rows, 30)}, 25, exclude=batch_of(seen, 70),
                include_only=torch.tensor(allowed), chunk=chunk)
    want = brute_top_k(z, 25, [set(s) for s in seen], allowed)
    for u in range(15):
        assert got.items[u, :len(want[u])].tolist() == want[u]
        assert (got.items[u, len(want[u]):] == -1).all()  # fewer eligible items than K: empty slots


def test_rows_with_every_item_excluded_get_only_empty_slots():
    net = exact_network(10, 3, 12, "Sigmoid")
    everything = batch_of([list(range(12)), []], 12)
    got = top_k(net, {"Input": batch_of([[1], [2]], 10)}, 5, exclude=everything)
    assert (got.items[0] == -1).all() and torch.isneginf(got.scores[0]).all()
    assert (got.items[1] >= 0).all()


def test_score_matrix_ranking_with_ties_nan_and_signed_zeros():
    rng = np.random.default_rng(7)
    scores = rng.integers(-3, 4, size=(40, 333)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.05] = np.nan
    scores[scores == 0] = np.where(rng.random(int((scores == 0).sum())) < 0.5, -0.0, 0.0)
    before = scores.copy()
    t = torch.tensor(scores)
    for chunk in (1, 10, 128, None):
        for k in (1, 9, 100, 333, 400):
            got = top_k_scores(t, k, chunk=chunk)
            want = brute_top_k(np.where(np.isnan(scores), -np.inf, scores), k)
            for u in range(40):
                assert got.items[u, :len(want[u])].tolist() == want[u]
    assert np.array_equal(t.numpy(), before, equal_nan=True)  # the caller's scores are untouched


def test_tied_rows_past_one_block_use_the_exact_path(monkeypatch):
    """Rows whose K-th score is tied beyond the picked items are redone on exact keys, one block
    of rows at a time; a tiny block size makes several blocks."""
    import destiny.predict.topk as topk

    monkeypatch.setattr(topk, "KEY_BLOCK_ELEMENTS", 16)
    scores = torch.zeros(9, 50)
    scores[:, 45:] = 1.0  # 5 clear winners, then 45 items tied at 0
    got = top_k_scores(scores, 8, chunk=25)
    assert got.items.tolist() == [[45, 46, 47, 48, 49, 0, 1, 2]] * 9
    assert topk.KEY_BLOCK_ELEMENTS == 16


def test_batches_and_chunks_do_not_change_the_answer():
    rng = np.random.default_rng(2)
    net = exact_network(40, 6, 120, "Relu", seed=9)
    rows = random_rows(rng, 30, 40)
    whole = top_k(net, {"Input": batch_of(rows, 40)}, 17)
    for chunk in (3, 50):
        parts = [top_k(net, {"Input": batch_of(rows[i:i + 7], 40)}, 17, chunk=chunk) for i in range(0, 30, 7)]
        assert torch.equal(torch.cat([p.items for p in parts]), whole.items)
        assert torch.equal(torch.cat([p.scores for p in parts]), whole.scores)


def test_float64_network_and_k_validation():
    net = exact_network(20, 4, 30, "Sigmoid", dtype=torch.float64)
    rows = [[1, 2], [3]]
    got = top_k(net, {"Input": batch_of(rows, 20)}, 5, chunk=8)
    z = exact_scores(net, rows)
    assert got.items.tolist() == brute_top_k(z, 5)
    with pytest.raises(UsageError, match="positive"):
        top_k(net, {"Input": batch_of(rows, 20)}, 0)
    with pytest.raises(UsageError, match="no layer 'Nope'"):
        top_k(net, {"Input": batch_of(rows, 20)}, 3, layer="Nope")
    with pytest.raises(UsageError, match="Hidden layer"):
        top_k(net, {"Input": batch_of(rows, 20)}, 3, layer="Hidden")


def test_saturated_sigmoid_still_ranks_by_pre_activation():
    """sigmoid(20) == sigmoid(30) == 1.0 in float32: the item the network is surer of comes first."""
    net = exact_network(4, 1, 3, "Sigmoid")
    with torch.no_grad():
        net.weights["w0"].fill_(1.0)
        net.biases["b0"].fill_(0.0)
        net.weights["w1"].copy_(torch.tensor([[20.0, 30.0, 20.0]]))
        net.biases["b1"].fill_(0.0)
    got = top_k(net, {"Input": batch_of([[0]], 4)}, 3, chunk=1)
    assert got.items.tolist() == [[1, 0, 2]] and got.scores.tolist() == [[1.0, 1.0, 1.0]]
