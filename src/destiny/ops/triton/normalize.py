"""Fused row normalisation of a sparse batch: each example's values scaled to unit L2 or L1
norm (``reference.normalize_rows_ref`` is the spec).

One program per example walks its segment [offsets[b], offsets[b+1]) twice, BLOCK slots at a
time: first summing v² (or |v|) into a BLOCK-wide accumulator reduced once at the end — a
fixed order, so the result does not depend on scheduling — then writing v·scale, scale = 1/norm
(0 for an example whose norm is 0: no NaN). The loop bounds are read from device memory: no host
sync, static shapes, capturable in a CUDA graph. Padding slots (past offsets[-1]) lie in no
segment and keep the zeros the output is allocated with. The sums' order differs from the
reference's (a sequential segment sum), so results agree to float32 rounding, not bitwise.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from destiny.ops.reference import normalized_dtype
from destiny.ops.sparse import SparseBatch


@triton.jit
def normalize_kernel(val_ptr, out_ptr, off_ptr, L2: tl.constexpr, HAS_VALUES: tl.constexpr,
                     BLOCK: tl.constexpr):
    """out[k] = v[k] / ‖v_b‖ over the slots k of example b = program_id(0) (v = 1 without
    HAS_VALUES); ‖·‖ the L2 norm (L2) or the L1 norm; 0 where the norm is 0."""
    b = tl.program_id(0).to(tl.int64)
    start = tl.load(off_ptr + b)
    end = tl.load(off_ptr + b + 1)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(start, end, BLOCK):
        offs = k + tl.arange(0, BLOCK)
        ok = offs < end
        if HAS_VALUES:
            v = tl.load(val_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        else:
            v = tl.where(ok, 1.0, 0.0)
        if L2:
            acc += v * v
        else:
            acc += tl.abs(v)
    size = tl.sum(acc, axis=0)
    if L2:
        size = tl.sqrt_rn(size)
    one = tl.full([1], 1.0, tl.float32)
    scale = tl.where(size > 0, tl.div_rn(one, tl.where(size > 0, size, one)), 0.0)  # (1,)
    for k in range(start, end, BLOCK):
        offs = k + tl.arange(0, BLOCK)
        ok = offs < end
        if HAS_VALUES:
            v = tl.load(val_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        else:
            v = tl.full([BLOCK], 1.0, tl.float32)
        tl.store(out_ptr + offs, (v * scale).to(out_ptr.dtype.element_ty), mask=ok)


BLOCK = 128  # slots a step: an example of the seed network holds ≈144


def normalize_rows(batch: SparseBatch, norm: str, dtype: torch.dtype = torch.float32) -> SparseBatch:
    """The batch with each example's values scaled to unit ``norm`` ("L2" or "L1"); values
    (nnz,) in ``reference.normalized_dtype`` (``dtype`` for indicator data), offsets and indices
    shared with ``batch``. One program per example; reads nnz values twice and writes nnz, plus
    a zero fill of the nnz output slots. Not differentiable (input data)."""
    if norm not in ("L1", "L2"):
        raise ValueError(f"norm must be 'L1' or 'L2'; got {norm!r}")
    values = torch.zeros(batch.nnz, dtype=normalized_dtype(batch, dtype), device=batch.device)
    if batch.nnz and batch.batch_size:
        src = values if batch.values is None else batch.values.contiguous()
        normalize_kernel[(batch.batch_size,)](src, values, batch.offsets, L2=norm == "L2",
                                              HAS_VALUES=batch.values is not None, BLOCK=BLOCK, num_warps=4)
    out = SparseBatch(batch.offsets, batch.indices, values, batch.n_features, batch.weights, batch.ignore_zero,
                      batch.padded)
    out._rows = getattr(batch, "_rows", None)
    return out
