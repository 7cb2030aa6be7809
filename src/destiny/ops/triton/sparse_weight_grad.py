"""The sparse input layer's weight gradient, only for the features present in the batch, with
static shapes and no host sync (CUDA-graph capturable).

rows[u, :] = Σ over the nonzeros k of feature u, in example order, of v_k · grad_out[row_k, :].

1. torch: a stable sort of the (padded) feature ids (as int16/int32 where they fit) keeps example order within a feature and
   puts the padding sentinel (n_features) last; a segment starts where the id changes; an
   inclusive cumsum of the start flags numbers the segments.
2. ``segment_starts_kernel``: one lane a sorted position; the lanes at a segment start of a
   real feature write the segment's start offset and its feature id; the lane at the last real
   position writes the count of real features (a device scalar) and the end offset.
3. The segmented gather-sum kernel of ``sparse_linear.py`` with features as segments (programs
   past the count exit at once), over the nonzeros' rows and values in sorted order.

No atomics, every sum in a fixed order. The same machinery merges two row-sparse gradients
(``merge``). Spec: ``reference.segment_rows_ref`` / ``reference.sparse_weight_grad_ref``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from destiny.backend import TRITON_INTERPRET
from destiny.ops.sparse import RowSparseGrad, SparseBatch
from destiny.ops.triton.sparse_linear import SEGMENT_BLOCKS, gather_sum

BLOCK = 4096 if TRITON_INTERPRET else 1024  # sorted positions a program


@triton.jit
def segment_starts_kernel(keys_ptr, seg_ptr, starts_ptr, features_ptr, count_ptr, n, sentinel,
                          BLOCK: tl.constexpr):
    """keys (n,) sorted ascending (real keys < sentinel ≤ padding keys); seg (n,) int64 the
    inclusive cumsum of the segment-start flags. Writes starts[u] (segment u's first position,
    starts[count] = the real positions' end), features[u] and count[0]."""
    p = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = p < n
    key = tl.load(keys_ptr + p, mask=ok, other=sentinel).to(tl.int64)
    prev = tl.load(keys_ptr + p - 1, mask=ok & (p > 0), other=-1).to(tl.int64)
    after = tl.load(keys_ptr + p + 1, mask=p + 1 < n, other=sentinel).to(tl.int64)
    seg = tl.load(seg_ptr + p, mask=ok, other=1) - 1  # 0-based segment number
    real = ok & (key < sentinel)
    first = real & (key != prev)
    tl.store(starts_ptr + seg, p, mask=first)
    tl.store(features_ptr + seg, key, mask=first)
    last = real & (after >= sentinel)  # the last real position: at most one lane in the launch
    tl.store(count_ptr + p * 0, seg + 1, mask=last)
    tl.store(starts_ptr + seg + 1, p + 1, mask=last)
    none = ok & (p == 0) & (key >= sentinel)  # no real key at all
    tl.store(count_ptr + p * 0, p * 0, mask=none)
    tl.store(starts_ptr + p * 0, p * 0, mask=none)


def segment_rows(keys: torch.Tensor, n_rows: int, src: torch.Tensor, src_rows: torch.Tensor | None = None,
                 values: torch.Tensor | None = None) -> RowSparseGrad:
    """Σ per distinct key of the rows src[src_rows[k]] · values[k] over the positions k holding
    that key, in position order; keys ≥ n_rows (padding) are skipped.

    keys: (n,) int32/int64. src: (S, H) float, unit column stride. src_rows: (n,) int64 or None
    (position k reads src[k]). values: (n,) float or None (1). Returns a RowSparseGrad of
    capacity min(n, n_rows) in src's dtype (accumulated in fp32). No host sync.
    """
    n, width = keys.numel(), src.shape[1]
    cap = min(n, n_rows)
    device = src.device
    features = torch.empty(cap, dtype=torch.int64, device=device)
    rows = torch.empty(cap, width, dtype=src.dtype, device=device)
    count = torch.zeros((), dtype=torch.int64, device=device)
    if n == 0:
        return RowSparseGrad(features, rows, count)
    for narrow in (torch.int16, torch.int32):  # fewer key bits, fewer radix sort passes
        if n_rows <= torch.iinfo(narrow).max:
            keys = keys.to(narrow)
            break
    sorted_keys, order = torch.sort(keys, stable=True)  # (n,), (n,) int64
    flags = torch.empty(n, dtype=torch.bool, device=device)
    flags[:1] = True
    torch.ne(sorted_keys[1:], sorted_keys[:-1], out=flags[1:])
    seg = torch.cumsum(flags, 0)  # (n,) int64 inclusive
    starts = torch.empty(cap + 1, dtype=torch.int64, device=device)
    segment_starts_kernel[(triton.cdiv(n, BLOCK),)](sorted_keys, seg, starts, features, count, n, n_rows,
                                                     BLOCK=BLOCK, num_warps=4)
    ids = order if src_rows is None else src_rows[order]  # (n,) sorted position k reads src[ids[k]]
    if values is not None:
        values = values[order]
    gather_sum(rows, src.contiguous(), starts, ids, values, count=count, blocks=SEGMENT_BLOCKS)
    return RowSparseGrad(features, rows, count)


def sparse_weight_grad(batch: SparseBatch, grad_out: torch.Tensor, n_rows: int | None = None) -> RowSparseGrad:
    """The gradient of x @ W with respect to W (n_rows = batch.n_features rows) as a
    RowSparseGrad: the batch's distinct features, sorted, and their rows.

    grad_out: (B, H) float. rows are in grad_out's dtype, accumulated in fp32, each summed in
    example order (the same features as the reference; rows equal to fp32 rounding, bitwise
    equal run to run). A padded batch's sentinel slots are skipped.

    Moves: a sort of nnz int32 keys; nnz·H elements of grad_out gathered (B·H from L2 after the
    first touch) + U·H written; 2·nnz·H FLOPs.
    """
    n_rows = batch.n_features if n_rows is None else n_rows
    return segment_rows(batch.indices, n_rows, grad_out, batch.rows(), batch.values)


def merge(a: RowSparseGrad, b: RowSparseGrad, n_rows: int) -> RowSparseGrad:
    """a + b: the union of their features, the rows of a feature in both summed (a's first)."""
    def keys(g: RowSparseGrad) -> torch.Tensor:
        valid = torch.arange(g.capacity, device=g.features.device) < g.count
        return torch.where(valid, g.features, n_rows)

    return segment_rows(torch.cat([keys(a), keys(b)]), n_rows, torch.cat([a.rows, b.rows.to(a.rows.dtype)]))
