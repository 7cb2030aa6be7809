"""The sparse input layer's weight gradient, only for the features present in the batch.

rows[u, :] = Σ over the nonzeros k of feature u, in example order, of v_k · grad_out[row_k, :].
torch builds the transposed batch (a stable sort of the feature ids keeps example order within
a feature; unique_consecutive and cumsum give the per-feature segments), then the segmented
gather-sum kernel of ``sparse_linear.py`` runs with features as segments and grad_out's rows as
the gathered rows: no atomics, every sum in a fixed order. Spec:
``reference.sparse_weight_grad_ref``.
"""

from __future__ import annotations

import torch

from destiny.ops.sparse import SparseBatch
from destiny.ops.triton.sparse_linear import gather_sum


def transpose_batch(batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The batch as CSR over features: (features (U,) int64 sorted unique, offsets (U+1,) int64,
    examples (nnz,) int64 — each nonzero's row, in example order within a feature —, values
    (nnz,) in that order or None). One host sync (U, the number of distinct features)."""
    order = torch.argsort(batch.indices, stable=True)  # (nnz,) int64
    features, counts = torch.unique_consecutive(batch.indices[order], return_counts=True)  # host sync: U
    offsets = torch.zeros(features.numel() + 1, dtype=torch.int64, device=batch.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    examples = batch.rows()[order]
    values = None if batch.values is None else batch.values[order]
    return features.to(torch.int64), offsets, examples, values


def sparse_weight_grad(batch: SparseBatch, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of x @ W with respect to W, as (features (U,) int64, rows (U, H)).

    grad_out: (B, H) float. rows are in grad_out's dtype, accumulated in fp32, each summed in
    example order (the same features as the reference; rows equal to fp32 rounding, bitwise
    equal run to run).

    Moves: a sort of nnz int64 keys; nnz·H elements of grad_out gathered (B·H from L2 after the
    first touch) + U·H written; 2·nnz·H FLOPs.
    """
    features, offsets, examples, values = transpose_batch(batch)
    grad_out = grad_out.contiguous()
    rows = torch.empty(features.numel(), grad_out.shape[1], dtype=grad_out.dtype, device=grad_out.device)
    gather_sum(rows, grad_out, offsets, examples, values)
    return features, rows
