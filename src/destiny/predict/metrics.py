"""Ranking metrics of top-K recommendations against held-out items.

Inputs: ``recommended`` (users × K) item ids, best first, −1 for an empty slot; ``held_out``
the relevant items of the same users as CSR (offsets, indices). Users without held-out items
are left out of every average (they cannot be scored), and counted in ``users_skipped``.

Definitions (rel_i = 1 when the item at rank i, 1-based, is relevant; R = |relevant held-out
items|, each item counted once):

    Precision@K   Σ rel_i / K                          (empty slots count as misses)
    Recall@K      Σ rel_i / R                          (the textbook recall)
    Recall@K(min) Σ rel_i / min(K, R)                  (Liang et al. 2018, "VAEs for CF"; 1.0 is
                                                        reachable even when R > K)
    NDCG@K        Σ rel_i / log2(i + 1)  ÷  Σ_{i ≤ min(K, R)} 1 / log2(i + 1)
    MAP@K         Σ rel_i · Precision@i / min(K, R)
    HitRate@K     1 if any rel_i
    Coverage@K    distinct items recommended in the first K slots, over every user given
                  (scored or not) ÷ catalogue size

Ties: metrics operate on ranked lists and never look at scores. Destiny's top-K ranks equal
scores by the lower item index (``destiny.predict.topk``), so metrics of its recommendations
are deterministic; a recs file is taken in its own order. An item recommended twice to one user
counts once (its first rank). A list shorter than K is padded with empty slots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

# Names of the metrics in JSON and tables, with what each means.
METRIC_NAMES = {
    "precision": "Precision@K = hits / K",
    "recall": "Recall@K = hits / |relevant| (textbook)",
    "recall_min": "Recall@K = hits / min(K, |relevant|) (Liang et al. 2018)",
    "ndcg": "NDCG@K, log2 discount, ideal = min(K, |relevant|) hits at the top",
    "map": "MAP@K = Σ rel_i · P@i / min(K, |relevant|)",
    "hit_rate": "HitRate@K = share of users with at least one hit",
    "coverage": "Coverage@K = distinct recommended items / catalogue",
}


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


def unique_rows(offsets: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR with each row's repeated items removed (first occurrence kept, order kept)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    rows = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    if not len(indices):
        return offsets, indices
    width = int(indices.max()) + 1
    _, first = np.unique(rows * width + indices, return_index=True)
    keep = np.zeros(len(indices), dtype=bool)
    keep[first] = True
    counts = np.bincount(rows[keep], minlength=len(offsets) - 1)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), indices[keep]


def relevant_items(offsets, indices, values=None, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The relevant held-out items as CSR: every listed item, or with ``threshold`` those whose
    value is ≥ threshold (analog held-out data such as ratings). Repeated items count once."""
    offsets = np.asarray(offsets, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    if threshold is not None:
        if values is None:
            raise ValueError("a relevance threshold needs held-out values (analog data)")
        keep = np.asarray(values, dtype=np.float64) >= threshold
        rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        counts = np.bincount(rows[keep], minlength=len(offsets) - 1)
        offsets, indices = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), indices[keep]
    return unique_rows(offsets, indices)


def relevance(recommended: np.ndarray, offsets: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(users, K) bool: whether each recommended item is among the user's held-out items (an
    item recommended twice is relevant at its first rank only)."""
    recommended = np.asarray(recommended, dtype=np.int64)
    users, k = recommended.shape
    offsets = np.asarray(offsets, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    lengths = np.diff(offsets)
    width = int(max(recommended.max(initial=-1), np.max(indices, initial=-1))) + 2
    held_keys = np.repeat(np.arange(users, dtype=np.int64), lengths) * width + indices
    held_keys.sort()
    rec_keys = np.arange(users, dtype=np.int64)[:, None] * width + recommended
    if not len(held_keys):
        return np.zeros((users, k), dtype=bool)
    pos = np.searchsorted(held_keys, rec_keys)
    found = (held_keys[np.minimum(pos, len(held_keys) - 1)] == rec_keys) & (recommended >= 0)
    if k > 1 and found.any():  # repeated recommendations: only the first counts
        _, first = np.unique(rec_keys.ravel(), return_index=True)
        once = np.zeros(users * k, dtype=bool)
        once[first] = True
        found &= once.reshape(users, k)
    return found


def _pad(recommended: np.ndarray, k: int) -> np.ndarray:
    if recommended.shape[1] >= k:
        return recommended[:, :k]
    pad = np.full((recommended.shape[0], k - recommended.shape[1]), -1, dtype=np.int64)
    return np.concatenate([recommended, pad], axis=1)


def ranking_metrics(recommended: np.ndarray, offsets: np.ndarray, indices: np.ndarray, k: int | None = None,
                    n_items: int | None = None) -> RankingMetrics:
    """All the metrics at K (default: the number of columns of ``recommended``)."""
    recommended = np.asarray(recommended, dtype=np.int64)
    if recommended.ndim != 2:
        raise ValueError(f"recommended must be (users, K), not shape {recommended.shape}")
    k = recommended.shape[1] if k is None else int(k)
    if k < 1:
        raise ValueError(f"K must be a positive integer, not {k}")
    recommended = _pad(recommended, k)
    offsets, indices = unique_rows(offsets, indices)
    if len(offsets) - 1 != len(recommended):
        raise ValueError(f"{len(recommended)} users recommended but held-out items for {len(offsets) - 1}")
    rel = relevance(recommended, offsets, indices)
    n_relevant = np.diff(offsets)
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


def metrics_at(recommended: np.ndarray, offsets: np.ndarray, indices: np.ndarray, ks: Iterable[int],
               n_items: int | None = None) -> list[RankingMetrics]:
    """``ranking_metrics`` at each K of ``ks`` (the first K columns of one ranked list)."""
    return [ranking_metrics(recommended, offsets, indices, k, n_items) for k in ks]
