"""One scorer for every method of the quality benchmark (issue 18), so all are ranked and
measured the same way.

    metrics = score(lambda users: X[users] @ B, train, test, device="cuda")   # a score function
    metrics = score(top_ids, train, test)                                     # or ranked ids

Ranking: the top 100 items of each user with at least one test item, the items of ``train``
(the fit's own training data) removed, equal scores ranked by the lower item id — Destiny's
``destiny.predict.topk.top_k_scores``, the rule its own recommendations follow — in torch on
``device``, a batch of users at a time (batch × items float32 scores at once). Metrics:
``destiny.predict.metrics.ranking_metrics`` (means over users with ≥ 1 test item):
P@10 = hits / 10; Recall@20 = hits / |test| (LightGCN's Recall@20 on Gowalla); NDCG@K with
binary gains and the ideal DCG of min(|test|, K) hits (Liang et al. 2018).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from destiny.errors import UsageError
from destiny.ops.sparse import SparseBatch
from destiny.predict.metrics import ranking_metrics, relevance
from destiny.predict.topk import top_k_scores

TOP = 100  # the length of every ranked list
SCORE_ELEMENTS = 1 << 26  # batch × items float32 scores held at once (256 MB; the top-K keeps a chunk more)

# (name in tables and JSON, K, field of RankingMetrics)
REPORTED = (("P@10", 10, "precision"), ("Recall@20", 20, "recall"), ("NDCG@20", 20, "ndcg"),
            ("NDCG@100", 100, "ndcg"), ("Recall@100", 100, "recall"), ("Recall@20(min)", 20, "recall_min"))

REPORTED_NAMES = tuple(name for name, _, _ in REPORTED)

ScoreFn = Callable[[np.ndarray], torch.Tensor]  # user ids (b,) → (b, items) scores, any float dtype


def scored_users(test: sp.csr_matrix) -> np.ndarray:
    """Ids of the users with at least one held-out item (the others count in no mean)."""
    return np.flatnonzero(np.diff(test.indptr) > 0)


def _exclude(train: sp.csr_matrix, users: np.ndarray, device) -> SparseBatch:
    rows = train[users]
    return SparseBatch(torch.as_tensor(rows.indptr.astype(np.int64), device=device),
                       torch.as_tensor(rows.indices.astype(np.int64), device=device), None, train.shape[1])


@torch.no_grad()
def rank(scores: ScoreFn, train: sp.csr_matrix, users: np.ndarray, *, device="cpu", k: int = TOP,
         batch: int | None = None) -> np.ndarray:
    """(len(users), k) int64 item ids, best first, train's items removed, −1 where fewer than k
    items are eligible. ``scores(ids)`` gives a batch's scores (moved to ``device``)."""
    n_items = train.shape[1]
    batch = batch or max(1, min(4096, SCORE_ELEMENTS // max(n_items, 1)))
    out = np.empty((len(users), k), dtype=np.int64)
    for start in range(0, len(users), batch):
        ids = users[start:start + batch]
        block = scores(ids)
        if block.shape != (len(ids), n_items):
            raise UsageError(f"a score function gave shape {tuple(block.shape)} for {len(ids)} users; expected "
                             f"({len(ids)}, {n_items})")
        block = block.to(device=device, dtype=torch.float32)
        top = top_k_scores(block, k, exclude=_exclude(train, ids, device))
        out[start:start + len(ids)] = top.items.cpu().numpy()
    return out


def metrics_of(ranked: np.ndarray, users: np.ndarray, test: sp.csr_matrix) -> dict:
    """The reported metrics of ranked lists (rows = ``users``) against their test items."""
    held = test[users]
    out = {}
    for name, k, attr in REPORTED:
        m = ranking_metrics(ranked, held.indptr, held.indices, k=k, n_items=test.shape[1])
        out[name] = getattr(m, attr)
    out["users"] = m.users
    return out


def score(scores_or_topk, train: sp.csr_matrix, test: sp.csr_matrix, *, device="cpu",
          batch: int | None = None) -> dict:
    """The metrics of a method against ``test``. ``scores_or_topk``: a score function
    ``users → (b, items)`` (ranked here, ``train``'s items removed), or an (all users, ≥ 100)
    array of ranked item ids (already without ``train``'s items: checked, UsageError if not)."""
    users = scored_users(test)
    if callable(scores_or_topk):
        ranked = rank(scores_or_topk, train, users, device=device, batch=batch)
    else:
        ranked = np.asarray(scores_or_topk, dtype=np.int64)
        if ranked.ndim != 2 or ranked.shape[0] != train.shape[0] or ranked.shape[1] < TOP:
            raise UsageError(f"ranked ids must be (all {train.shape[0]} users, ≥ {TOP}); got shape {ranked.shape}")
        ranked = ranked[users, :TOP]
        seen = train[users]
        leaked = int(relevance(ranked, seen.indptr, seen.indices).sum())
        if leaked:
            raise UsageError(f"the ranked lists hold {leaked} training items; remove the fit's training items "
                             "from the ranking (filter_already_liked_items) before scoring")
    return metrics_of(ranked, users, test)


def popularity_scores(train: sp.csr_matrix, device="cpu") -> ScoreFn:
    """Every user gets the items' training counts as scores (the most-popular baseline)."""
    counts = torch.as_tensor(np.asarray(train.sum(axis=0)).ravel(), dtype=torch.float32, device=device)
    return lambda users: counts.expand(len(users), -1)


def dense_rows(m: sp.csr_matrix, users: np.ndarray, device, dtype=torch.float32) -> torch.Tensor:
    """(len(users), items) dense rows of a sparse matrix on ``device``."""
    rows = m[users].tocoo()
    out = torch.zeros(len(users), m.shape[1], dtype=dtype, device=device)
    out[torch.as_tensor(rows.row, device=device).long(), torch.as_tensor(rows.col, device=device).long()] = \
        torch.as_tensor(rows.data, dtype=dtype, device=device)
    return out


def fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"
