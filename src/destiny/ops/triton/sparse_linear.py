"""The sparse input layer's forward pass: out[b, :] = Σ_k v_k · W[idx_k, :] (+ bias).

One kernel, a segmented gather-sum: segment s (an example) sums the rows ``src[ids[k]]`` of
its nonzeros k ∈ [seg[s], seg[s+1]), scaled by their values. The weight gradient
(``sparse_weight_grad.py``) is the same kernel on the transposed batch: there a segment is a
feature and the gathered rows are grad_out's. Spec: ``reference.sparse_linear_ref``.

Determinism: each program owns one (segment, column block) tile of the output and walks its
segment's nonzeros in order, BLOCK_K at a time, into a (BLOCK_K, BLOCK_H) fp32 accumulator
(nonzero k adds into lane k mod BLOCK_K), then sums the BLOCK_K lanes in a fixed tree. No
atomics; the block sizes are constants of each call site, so a run repeats bit for bit.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from destiny.backend import TRITON_INTERPRET
from destiny.ops.sparse import SparseBatch


@triton.jit
def gather_sum_kernel(out_ptr, src_ptr, seg_ptr, ids_ptr, val_ptr, bias_ptr, count_ptr,
                      H, src_stride, out_stride,
                      HAS_VALUES: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_COUNT: tl.constexpr,
                      BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr):
    """out[s, cols] = Σ_{k ∈ segment s} val[k] · src[ids[k], cols] (+ bias[cols]).

    Grid (segments, cdiv(H, BLOCK_H)). seg: (segments + 1,) int64 CSR offsets; ids: (nnz,)
    int32/int64 rows of src; val: (nnz,) float or unused. HAS_COUNT: only the first count[0]
    segments are valid (a device value), the programs of the others exit at once. Row offsets
    are int64: ids · stride passes 2^31 for a 10M-row src.
    """
    s = tl.program_id(0).to(tl.int64)
    if HAS_COUNT:
        if s >= tl.load(count_ptr):
            return
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    col_ok = cols < H
    start = tl.load(seg_ptr + s)
    end = tl.load(seg_ptr + s + 1)
    acc = tl.zeros((BLOCK_K, BLOCK_H), dtype=tl.float32)
    for k0 in range(start, end, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_ok = k < end
        ids = tl.load(ids_ptr + k, mask=k_ok, other=0).to(tl.int64)
        tile = tl.load(src_ptr + ids[:, None] * src_stride + cols[None, :],
                       mask=k_ok[:, None] & col_ok[None, :], other=0.0).to(tl.float32)
        if HAS_VALUES:
            v = tl.load(val_ptr + k, mask=k_ok, other=0.0).to(tl.float32)
            tile = tile * v[:, None]
        acc += tile
    total = tl.sum(acc, axis=0)
    if HAS_BIAS:
        total += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + s * out_stride + cols, total.to(out_ptr.dtype.element_ty), mask=col_ok)


# (BLOCK_K, BLOCK_H, num_warps), tuned on an H200 for the seed network (27,278 × 1536, ~118
# nonzeros an example, batch 1024): the forward pass walks ~118 nonzeros an example, the weight
# gradient ~6 a feature, where the program count, not the bytes, sets the time.
FORWARD_BLOCKS = (32, 128, 4)
SEGMENT_BLOCKS = (4, 512, 2)


def block_h(width: int, most: int = 256) -> int:
    """Columns per program: ``most``, fewer for narrow layers; up to 1024 under the
    interpreter, whose cost is per program (the sums do not depend on it)."""
    return max(16, min(1024 if TRITON_INTERPRET else most, triton.next_power_of_2(width)))


def gather_sum(out: torch.Tensor, src: torch.Tensor, seg: torch.Tensor, ids: torch.Tensor,
               values: torch.Tensor | None, bias: torch.Tensor | None = None, *,
               count: torch.Tensor | None = None, blocks: tuple[int, int, int] = FORWARD_BLOCKS) -> torch.Tensor:
    """Launch ``gather_sum_kernel`` into out (segments, H); src (rows, H) with unit column stride.
    count: a device int64 scalar, the number of valid segments (the rows of out past it are
    left unwritten). blocks: (BLOCK_K, most BLOCK_H, num_warps), constants of each call site.
    BLOCK_K and the lanes' layout (columns a warp) set the order of the final lane sum: on an
    H100, 128 columns on 4 warps and 256 on 8 gave the same bits, while 128 on 8 or 64 on 8 did
    not. A layer's width fixes BLOCK_H, so a run repeats bit for bit."""
    segments, width = out.shape
    if segments == 0 or width == 0:
        return out
    if src.stride(-1) != 1 or out.stride(-1) != 1:
        raise ValueError("gather_sum needs unit column strides (row-major src and out)")
    if bias is not None:
        bias = bias.contiguous()
    block_k, most, warps = blocks
    bh = block_h(width, most)
    grid = (segments, triton.cdiv(width, bh))
    gather_sum_kernel[grid](out, src, seg, ids, ids if values is None else values, out if bias is None else bias,
                            seg if count is None else count, width, src.stride(0), out.stride(0),
                            HAS_VALUES=values is not None, HAS_BIAS=bias is not None, HAS_COUNT=count is not None,
                            BLOCK_K=block_k, BLOCK_H=bh, num_warps=warps)
    return out


def sparse_linear_forward(batch: SparseBatch, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight (+ bias) for a sparse batch x, no autograd (``ops.functional.sparse_linear``
    wraps it).

    batch: B examples, nnz nonzeros (int64 offsets (B+1,), int32/int64 indices (nnz,), values
    (nnz,) float or None = 1). weight: (n_features, H) fp32/bf16/fp16, unit column stride.
    bias: (H,) or None. Returns (B, H) in weight's dtype, accumulated in fp32.

    Moves nnz·H weight elements (from L2 where features repeat) + B·H written + 12·nnz bytes
    of indices and values; 2·nnz·H FLOPs.
    """
    out = torch.empty(batch.batch_size, weight.shape[1], dtype=weight.dtype, device=weight.device)
    return gather_sum(out, weight, batch.offsets, batch.indices, batch.values, bias)
