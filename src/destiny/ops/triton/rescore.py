"""Exact re-scoring of chosen output columns: out[r, s] += Σ_i h[r, i] · W[i, items[r, s]] +
b[items[r, s]] in float64, for the slots lo ≤ s < count[r] of each row.

The second half of certified top-K (``destiny.predict.candidates``): a low-precision GEMM
picks each row's candidate items, this kernel scores them exactly. Products of two float32
values are exact in float64, so the only rounding is the float64 sum (≈ 2^-53 relative),
and the float32 rounding of the result is, in practice, the correctly rounded one.
Spec: ``reference.candidate_scores_ref``.

Determinism: one program owns one (row, BLOCK_C slots) tile, walks the inputs BLOCK_K at a
time into a (BLOCK_C, BLOCK_K) float64 accumulator (input i adds into lane i mod BLOCK_K),
sums the lanes in a fixed tree, then adds the bias: the result depends neither on the batch
nor on the other slots. No atomics.

Memory: every live slot reads its column of W once (n × 4 bytes) and the row of h once a
program. W is read through strides: a column-contiguous W (W.t() contiguous, stride (1, n))
makes each read one contiguous run; a row-major W (stride (width, 1)) reads one 32-byte sector
per element (8× the traffic) and is for outputs too wide to transpose.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_C = 16  # slots a program
BLOCK_K = 128  # inputs a step


@triton.jit
def rescore_kernel(out_ptr, h_ptr, w_ptr, b_ptr, items_ptr, count_ptr, n, lo,
                   out_stride, h_stride, items_stride, w_stride_i, w_stride_j,
                   BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (rows, cdiv(slots − lo, BLOCK_C)). out: (rows, slots) float64, added into;
    h: (rows, n) float32; W: (n, width) float32 through strides (int64 offsets: a 10M-wide W
    passes 2^31 elements); b: (width,) float32; items: (rows, slots) int64; count: (rows,)
    int64. Programs whose slots all lie at or past count[r] exit at once."""
    row = tl.program_id(0).to(tl.int64)
    first = lo + tl.program_id(1) * BLOCK_C
    count = tl.load(count_ptr + row)
    if first >= count:
        return
    slots = first + tl.arange(0, BLOCK_C)
    live = slots < count
    items = tl.load(items_ptr + row * items_stride + slots, mask=live, other=0)
    columns = items.to(tl.int64) * w_stride_j
    acc = tl.zeros((BLOCK_C, BLOCK_K), dtype=tl.float64)
    for k0 in range(0, n, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_ok = k < n
        h = tl.load(h_ptr + row * h_stride + k, mask=k_ok, other=0.0).to(tl.float64)
        w = tl.load(w_ptr + columns[:, None] + k.to(tl.int64)[None, :] * w_stride_i,
                    mask=live[:, None] & k_ok[None, :], other=0.0).to(tl.float64)
        acc += w * h[None, :]
    total = tl.sum(acc, axis=1) + tl.load(b_ptr + items, mask=live, other=0.0).to(tl.float64)
    prev = tl.load(out_ptr + row * out_stride + slots, mask=live, other=0.0)
    tl.store(out_ptr + row * out_stride + slots, prev + total, mask=live)


def candidate_scores_(out: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      items: torch.Tensor, lo: int, counts: torch.Tensor) -> torch.Tensor:
    """out (rows, slots) float64 += h @ weight[:, items] + bias[items] for the slots
    lo ≤ s < counts[r]; h (rows, n) float32, weight (n, width) float32 any strides, bias
    (width,) float32, items (rows, slots) int64, counts (rows,) int64 ≤ slots. Returns out."""
    rows, slots = items.shape
    if rows == 0 or slots <= lo:
        return out
    h = h.contiguous()
    items = items.contiguous()
    counts = counts.contiguous()
    grid = (rows, triton.cdiv(slots - lo, BLOCK_C))
    rescore_kernel[grid](out, h, weight, bias.contiguous(), items, counts, h.shape[1], lo,
                         out.stride(0), h.stride(0), items.stride(0), weight.stride(0), weight.stride(1),
                         BLOCK_C=BLOCK_C, BLOCK_K=BLOCK_K, num_warps=4)
    return out
