"""Ranking metrics of top-K recommendations against held-out items.

Inputs: ``recommended`` (users × K) item ids, best first, −1 for an empty slot; ``held_out``
the relevant items of the same users as CSR (offsets, indices). Users without held-out items
are left out of every average (they cannot be scored), and counted in ``users_skipped``.

Definitions (rel_i = 1 when the item at rank i, 1-based, is relevant; R = |held-out|):

    Precision@K   Σ rel_i / K
    Recall@K      Σ rel_i / R                          (the textbook recall)
    Recall@K(min) Σ rel_i / min(K, R)                  (Liang et al. 2018, "VAEs for CF")
    NDCG@K        Σ rel_i / log2(i + 1)  ÷  Σ_{i ≤ min(K, R)} 1 / log2(i + 1)
    MAP@K         Σ rel_i · Precision@i / min(K, R)
    HitRate@K     1 if any rel_i
    Coverage@K    distinct recommended items / catalogue size (over all users)

Ties in scores are resolved before this point: top-K ranks equal scores by the lower item
index (``destiny.predict.topk``), so metrics are deterministic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class RankingMetrics:
    k: int
    precision: float
    recall: float
    recall_min: float
    ndcg: float
    map: float
    hit_rate: float
    coverage: float
    users: int
    users_skipped: int

    def as_dict(self) -> dict:
        return asdict(self)


def relevance(recommended: np.ndarray, offsets: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(users, K) bool: whether each recommended item is among the user's held-out items."""
    recommended = np.asarray(recommended, dtype=np.int64)
    users, k = recommended.shape
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    width = int(max(recommended.max(initial=-1), np.max(indices, initial=-1))) + 2
    held_keys = np.repeat(np.arange(users, dtype=np.int64), lengths) * width + np.asarray(indices, np.int64)
    held_keys.sort()
    rec_keys = np.arange(users, dtype=np.int64)[:, None] * width + recommended
    pos = np.searchsorted(held_keys, rec_keys)
    found = held_keys[np.minimum(pos, len(held_keys) - 1)] == rec_keys if len(held_keys) else np.zeros_like(rec_keys, bool)
    return found & (recommended >= 0)


def ranking_metrics(recommended: np.ndarray, offsets: np.ndarray, indices: np.ndarray, k: int | None = None,
                    n_items: int | None = None) -> RankingMetrics:
    """All the metrics at K (default: the number of columns of ``recommended``)."""
    recommended = np.asarray(recommended, dtype=np.int64)
    if k is not None:
        recommended = recommended[:, :k]
    k = recommended.shape[1]
    rel = relevance(recommended, offsets, indices)
    n_relevant = np.diff(np.asarray(offsets, dtype=np.int64))
    scored = n_relevant > 0
    rel, n_rel = rel[scored].astype(np.float64), n_relevant[scored].astype(np.float64)
    hits = rel.sum(1)
    cap = np.minimum(k, n_rel)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)[cap.astype(np.int64) - 1] if len(cap) else np.zeros(0)
    precision_at_i = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    mean = lambda x: float(x.mean()) if len(x) else 0.0  # noqa: E731
    valid = recommended[recommended >= 0]
    coverage = len(np.unique(valid)) / n_items if n_items else float("nan")
    return RankingMetrics(
        k=k,
        precision=mean(hits / k),
        recall=mean(hits / n_rel),
        recall_min=mean(hits / cap),
        ndcg=mean((rel * discount).sum(1) / ideal),
        map=mean((precision_at_i * rel).sum(1) / cap),
        hit_rate=mean((hits > 0).astype(np.float64)),
        coverage=coverage,
        users=int(scored.sum()),
        users_skipped=int((~scored).sum()),
    )
