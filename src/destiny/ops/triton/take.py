"""Gather a batch of examples into a padded CSR batch of static capacity, without a host sync.

One launch: program b < B copies example b's nonzeros (feature ids, values) from the dataset
into slots [offsets[b], offsets[b+1]) and writes their row b; the programs after them fill the
slots from offsets[B] (the real count, read from device memory) to the capacity with padding:
feature id n_features, value 0, row B. Spec: ``ops.sparse._take_padded_ref``; layout:
``ops.sparse`` (module docstring).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 128  # slots a step (an example of the seed's data has ~144 nonzeros)


@triton.jit
def take_kernel(idx_out, val_out, row_out, idx_ptr, val_ptr, starts_ptr, off_ptr, B, capacity, sentinel,
                HAS_VALUES: tl.constexpr, BLOCK: tl.constexpr):
    """Programs 0..B-1: an example each; programs B..: BLOCK padding slots each. int64 offsets."""
    pid = tl.program_id(0).to(tl.int64)
    lanes = tl.arange(0, BLOCK)
    if pid < B:
        src = tl.load(starts_ptr + pid)
        dst = tl.load(off_ptr + pid)
        end = tl.load(off_ptr + pid + 1)
        for k0 in range(dst, end, BLOCK):
            k = k0 + lanes
            ok = (k < end) & (k < capacity)
            tl.store(idx_out + k, tl.load(idx_ptr + src + (k - dst), mask=ok, other=0).to(tl.int64), mask=ok)
            if HAS_VALUES:
                tl.store(val_out + k, tl.load(val_ptr + src + (k - dst), mask=ok, other=0.0), mask=ok)
            tl.store(row_out + k, tl.zeros((BLOCK,), tl.int64) + pid, mask=ok)
    else:
        nnz = tl.load(off_ptr + B)
        k = (pid - B) * BLOCK + lanes
        ok = (k >= nnz) & (k < capacity)
        tl.store(idx_out + k, tl.zeros((BLOCK,), tl.int64) + sentinel, mask=ok)
        if HAS_VALUES:
            tl.store(val_out + k, tl.zeros((BLOCK,), tl.float32).to(val_out.dtype.element_ty), mask=ok)
        tl.store(row_out + k, tl.zeros((BLOCK,), tl.int64) + B, mask=ok)


def take_padded(data, starts: torch.Tensor, offsets: torch.Tensor, capacity: int):
    """(indices (C,) int64, values (C,) or None, rows (C,) int64) of the batch whose examples
    start at ``starts`` (B,) in ``data`` (a ``SparseRows``), with batch offsets (B+1,).
    Moves 2 × the batch's nonzeros (ids, values) + 24 bytes a slot written."""
    device = data.device
    batch = offsets.numel() - 1
    indices = torch.empty(capacity, dtype=torch.int64, device=device)
    values = None if data.values is None else torch.empty(capacity, dtype=data.values.dtype, device=device)
    rows = torch.empty(capacity, dtype=torch.int64, device=device)
    if capacity == 0:
        return indices, values, rows
    source_ids = data.indices if data.indices.numel() else indices  # (an empty dataset reads nothing)
    source_values = None if values is None else (data.values if data.values.numel() else values)
    grid = (batch + triton.cdiv(capacity, BLOCK),)
    take_kernel[grid](indices, indices if values is None else values, rows, source_ids,
                      source_ids if values is None else source_values, starts, offsets, batch, capacity,
                      data.n_features, HAS_VALUES=values is not None, BLOCK=BLOCK, num_warps=4)
    return indices, values, rows
