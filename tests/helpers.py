"""Factories shared by the tests: random sparse batches and datasets, tiny networks."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import torch

from destiny.config import loads_config
from destiny.ops.sparse import SparseBatch


def random_batch(batch: int, features: int, max_per_row: int, *, values: bool = False, seed: int = 0,
                 dtype=torch.float64, weights: bool = False) -> SparseBatch:
    """A CSR batch with distinct features per row (some rows may be empty)."""
    rng = np.random.default_rng(seed)
    rows = [np.sort(rng.choice(features, size=rng.integers(0, max_per_row + 1), replace=False))
            for _ in range(batch)]
    offsets = np.zeros(batch + 1, np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    indices = torch.as_tensor(np.concatenate(rows) if offsets[-1] else np.zeros(0, np.int64), dtype=torch.int64)
    vals = torch.as_tensor(rng.uniform(0.2, 2.0, size=int(offsets[-1])), dtype=dtype) if values else None
    w = torch.as_tensor(rng.uniform(0.5, 1.5, size=batch), dtype=dtype) if weights else None
    return SparseBatch(torch.as_tensor(offsets), indices, vals, features, w)


def sparse_dataset(rows: list, features: int, values: list | None = None) -> SimpleNamespace:
    """A minimal object with the SparseDataset fields the engine reads."""
    offsets = np.zeros(len(rows) + 1, np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    flat = np.concatenate([np.asarray(r, np.int32) for r in rows]) if offsets[-1] else np.zeros(0, np.int32)
    vals = None if values is None else np.concatenate([np.asarray(v, np.float32) for v in values])
    return SimpleNamespace(offsets=offsets, indices=flat, values=vals, weights=None, n_features=features,
                           dims=(features,), ignore_zero=False)


def clustered_dataset(users: int, items: int, seed: int = 0, clusters: int = 2) -> SimpleNamespace:
    """Users who each pick items from one of ``clusters`` disjoint item groups."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        pool = np.arange(items)[np.arange(items) % clusters == u % clusters]
        rows.append(np.sort(rng.choice(pool, size=rng.integers(3, 12), replace=False)))
    return sparse_dataset(rows, items)


def config(layers: list, **top):
    doc = {"Layers": layers}
    doc.update(top)
    return loads_config(json.dumps(doc))
