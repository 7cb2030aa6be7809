"""Small kernels on row-sparse gradients (``ops.sparse.RowSparseGrad``) that read the valid
count from device memory, so nothing waits for the host:

- ``slot_map``: (n_rows,) map weight row → gradient entry (−1: none), for the optimizer's
  one-pass update of every row;
- ``add_rows_``: dense[features[i]] += rows[i] for i < count (a dense gradient plus a
  row-sparse one, or a row-sparse one made dense).

The features of the valid entries are distinct, so every write has one writer: deterministic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from destiny.backend import TRITON_INTERPRET
from destiny.ops.sparse import RowSparseGrad

BLOCK = 4096 if TRITON_INTERPRET else 1024


@triton.jit
def slot_kernel(slot_ptr, features_ptr, count_ptr, cap, BLOCK: tl.constexpr):
    """slot[features[i]] = i for i < count[0] (i < cap)."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = (i < cap) & (i < tl.load(count_ptr))
    row = tl.load(features_ptr + i, mask=ok, other=0).to(tl.int64)
    tl.store(slot_ptr + row, i.to(slot_ptr.dtype.element_ty), mask=ok)


@triton.jit
def add_rows_kernel(dense_ptr, features_ptr, rows_ptr, count_ptr, H, dense_stride, rows_stride,
                    BLOCK_H: tl.constexpr):
    """dense[features[i], cols] += rows[i, cols]; grid (cap, cdiv(H, BLOCK_H)), i < count[0]."""
    i = tl.program_id(0).to(tl.int64)
    if i >= tl.load(count_ptr):
        return
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    ok = cols < H
    row = tl.load(features_ptr + i).to(tl.int64)
    g = tl.load(rows_ptr + i * rows_stride + cols, mask=ok, other=0.0).to(tl.float32)
    d = tl.load(dense_ptr + row * dense_stride + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(dense_ptr + row * dense_stride + cols, (d + g).to(dense_ptr.dtype.element_ty), mask=ok)


def slot_map(grad: RowSparseGrad, n_rows: int) -> torch.Tensor:
    """(n_rows,) int32 (int64 past 2^31 entries): the entry of each weight row, −1 if none."""
    dtype = torch.int32 if grad.capacity < 2**31 else torch.int64
    slot = torch.full((n_rows,), -1, dtype=dtype, device=grad.rows.device)
    if grad.capacity:
        slot_kernel[(triton.cdiv(grad.capacity, BLOCK),)](slot, grad.features, grad.count, grad.capacity,
                                                           BLOCK=BLOCK, num_warps=4)
    return slot


def add_rows_(dense: torch.Tensor, grad: RowSparseGrad) -> torch.Tensor:
    """dense (n_rows, H) += the row-sparse gradient, in place; returns dense."""
    rows = grad.rows.reshape(grad.capacity, -1)
    flat = dense.view(dense.shape[0], -1)
    width = flat.shape[1]
    if grad.capacity == 0 or width == 0:
        return dense
    if flat.stride(1) != 1 or rows.stride(1) != 1:
        raise ValueError("add_rows_ needs row-major tensors")
    block_h = max(16, min(1024 if TRITON_INTERPRET else 256, triton.next_power_of_2(width)))
    add_rows_kernel[(grad.capacity, triton.cdiv(width, block_h))](
        flat, grad.features, rows, grad.count, width, flat.stride(0), rows.stride(0), BLOCK_H=block_h, num_warps=4)
    return dense
