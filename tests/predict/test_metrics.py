"""Ranking metrics against a brute force written from the definitions, on seeded random cases:
ties in scores (ranked by (−score, item) before the metrics), users without held-out items,
K past the number of items, empty slots (−1), repeated items, relevance thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from destiny.predict.metrics import metrics_at, ranking_metrics, relevant_items
from destiny.predict.topk import top_k_scores


def brute(recs: list[list[int]], held: list[set], k: int, n_items: int) -> dict:
    """Every metric from its definition, one user at a time in plain Python."""
    p, r, rmin, ndcg, ap, hit = [], [], [], [], [], []
    for row, relevant in zip(recs, held):
        if not relevant:
            continue
        ranked = (list(row) + [-1] * k)[:k]
        rel, seen = [], set()
        for item in ranked:
            rel.append(1.0 if item >= 0 and item in relevant and item not in seen else 0.0)
            seen.add(item)
        hits, cap = sum(rel), min(k, len(relevant))
        p.append(hits / k)
        r.append(hits / len(relevant))
        rmin.append(hits / cap)
        ideal = sum(1 / math.log2(i + 2) for i in range(cap))
        ndcg.append(sum(g / math.log2(i + 2) for i, g in enumerate(rel)) / ideal)
        ap.append(sum(rel[i] * sum(rel[:i + 1]) / (i + 1) for i in range(k)) / cap)
        hit.append(1.0 if hits else 0.0)
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    shown = {i for row in recs for i in (list(row) + [-1] * k)[:k] if i >= 0}
    return dict(precision=mean(p), recall=mean(r), recall_min=mean(rmin), ndcg=mean(ndcg), map=mean(ap),
                hit_rate=mean(hit), coverage=len(shown) / n_items, users=len(p), users_skipped=len(recs) - len(p))


def csr(sets: list) -> tuple[np.ndarray, np.ndarray]:
    rows = [sorted(s) for s in sets]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return offsets, np.asarray([i for r in rows for i in r], dtype=np.int64)


def check(got, want: dict) -> None:
    for name, value in want.items():
        assert getattr(got, name) == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize("seed", range(12))
def test_metrics_of_ranked_scores_with_ties_equal_the_brute_force(seed):
    rng = np.random.default_rng(seed)
    users, items = int(rng.integers(1, 30)), int(rng.integers(1, 60))
    scores = rng.integers(0, 4, size=(users, items)).astype(np.float32)  # many ties
    held = [set(rng.choice(items, size=int(rng.integers(0, min(items, 12) + 1)), replace=False).tolist())
            for _ in range(users)]
    offsets, indices = csr(held)
    for k in (1, 3, 10, items, items + 5):
        ranked = top_k_scores(torch.tensor(scores), k, chunk=int(rng.integers(1, items + 1))).items.numpy()
        by_hand = [sorted(range(items), key=lambda i: (-scores[u, i], i))[:k] for u in range(users)]
        assert [row[row >= 0].tolist() for row in ranked] == by_hand  # ties: the lower item first
        check(ranking_metrics(ranked, offsets, indices, n_items=items), brute(by_hand, held, k, items))


@pytest.mark.parametrize("seed", range(8))
def test_lists_with_empty_slots_and_repeats_equal_the_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    users, items, width = 25, 40, int(rng.integers(1, 15))
    recs = rng.integers(-1, items, size=(users, width))
    recs[rng.random(recs.shape) < 0.2] = -1
    held = [set(rng.choice(items, size=int(rng.integers(0, 9)), replace=False).tolist()) for _ in range(users)]
    offsets, indices = csr(held)
    for k in (1, 5, width, width + 7):
        results = metrics_at(recs, offsets, indices, [k], n_items=items)
        rows = [[i for i in row] for row in recs.tolist()]
        check(results[0], brute(rows, held, k, items))


def test_hand_case():
    recs = np.array([[3, 1, -1, 2], [0, 5, 4, 1], [2, 2, 2, 2]])
    offsets, indices = csr([{1, 2}, set(), {2, 7, 8}])
    m = ranking_metrics(recs, offsets, indices, k=4, n_items=10)
    assert m.users == 2 and m.users_skipped == 1
    assert m.precision == pytest.approx((2 / 4 + 1 / 4) / 2)  # user 2: item 2 counts once
    assert m.recall == pytest.approx((2 / 2 + 1 / 3) / 2)
    assert m.recall_min == pytest.approx((2 / 2 + 1 / 3) / 2)
    ndcg0 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert m.ndcg == pytest.approx((ndcg0 + 1.0 / (1 + 1 / math.log2(3) + 1 / math.log2(4))) / 2)
    assert m.map == pytest.approx(((1 / 2 + 2 / 4) / 2 + 1 / 3) / 2)
    assert m.hit_rate == 1.0 and m.coverage == pytest.approx(6 / 10)


def test_duplicated_held_out_items_count_once_and_thresholds_select_relevant_items():
    offsets = np.array([0, 4, 6])
    indices = np.array([1, 1, 2, 3, 4, 5])
    values = np.array([5.0, 5.0, 3.0, 4.0, 1.0, 2.0])
    o, i = relevant_items(offsets, indices)
    assert o.tolist() == [0, 3, 5] and i.tolist() == [1, 2, 3, 4, 5]
    o, i = relevant_items(offsets, indices, values, threshold=4)
    assert o.tolist() == [0, 2, 2] and i.tolist() == [1, 3]
    m = ranking_metrics(np.array([[1, 2], [4, 5]]), o, i)
    assert m.users == 1 and m.users_skipped == 1 and m.precision == 0.5 and m.recall == 0.5


def test_no_users_and_bad_k():
    offsets, indices = csr([set(), set()])
    m = ranking_metrics(np.full((2, 3), -1), offsets, indices, n_items=5)
    assert m.users == 0 and m.users_skipped == 2 and m.precision == 0.0 and m.coverage == 0.0
    with pytest.raises(ValueError, match="positive"):
        ranking_metrics(np.zeros((2, 3)), offsets, indices, k=0)
