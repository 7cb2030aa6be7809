"""Fused dropout and alpha dropout with counter-based masks: nothing is stored for backward.

Element i of x (row-major) is kept when its uniform u_i ≥ p, u_i = word (i mod 4) of
Philox4x32-10(seed, counter i // 4) — ``destiny.ops.random.uniform`` exactly, so the mask is
bitwise the reference's (``reference.dropout_ref``, ``alpha_dropout_ref``). A program draws
BLOCK_C counters (4·BLOCK_C elements), one Philox call per counter; the backward pass draws
the same numbers again from the seed instead of reading a saved mask.

The seed is an int (a kernel argument) or a 0-d int64 device tensor that the kernel reads
(a CUDA graph replays with the seed of each step: the Trainer copies the step's seeds into
that tensor before the replay); both give the same numbers. ``denoise`` drops the nonzeros of
a sparse batch the same way, keeping their slots (value 0).

A shard of a model-parallel layer (columns [col_offset, col_offset + cols) of a row_stride-wide
layer) draws its elements' numbers from their place in the whole layer, element (b, j) taking
uniform number b·row_stride + col_offset + j (``dropout_shard_kernel``: one Philox call per
element, the word its number selects), so the N processes together draw exactly the
one-process mask.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from destiny.backend import TRITON_INTERPRET
from destiny.ops.sparse import SparseBatch


@triton.jit
def _uniforms(seed, seed_ptr, SEED_PTR: tl.constexpr, BLOCK_C: tl.constexpr):
    """(BLOCK_C, 4) uniforms of this program's counters and their element numbers (int64)."""
    if SEED_PTR:
        seed = tl.load(seed_ptr)
    counter = tl.program_id(0).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)  # (BLOCK_C,)
    u0, u1, u2, u3 = tl.rand4x(seed, counter)
    word = tl.arange(0, 4)[None, :]  # (1, 4): element 4c + w takes word w of counter c
    u = tl.where(word == 0, u0[:, None],
                 tl.where(word == 1, u1[:, None], tl.where(word == 2, u2[:, None], u3[:, None])))
    return u, counter[:, None] * 4 + word


@triton.jit
def _uniforms_sharded(seed, seed_ptr, cols, row_stride, col_offset, SEED_PTR: tl.constexpr, BLOCK: tl.constexpr):
    """(BLOCK,) uniforms of this program's elements e of a (rows, cols) shard, each the number
    g = row·row_stride + col_offset + col of the whole layer's stream, and e (int64)."""
    if SEED_PTR:
        seed = tl.load(seed_ptr)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,)
    row = offs // cols
    g = row * row_stride + col_offset + (offs - row * cols)
    u0, u1, u2, u3 = tl.rand4x(seed, g >> 2)
    word = g & 3
    u = tl.where(word == 0, u0, tl.where(word == 1, u1, tl.where(word == 2, u2, u3)))
    return u, offs


@triton.jit
def _drop(x_ptr, y_ptr, u, offs, n, p, scale, shift, saturation, ALPHA: tl.constexpr, BACKWARD: tl.constexpr):
    """y[offs] from x[offs] and the elements' uniforms u (any shape)."""
    ok = offs < n
    x = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    keep = u >= p
    if ALPHA and not BACKWARD:
        y = scale * tl.where(keep, x, saturation) + shift
    else:
        y = tl.where(keep, x * scale, 0.0)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=ok)


@triton.jit
def dropout_kernel(x_ptr, y_ptr, n, p, scale, shift, saturation, seed, seed_ptr,
                   ALPHA: tl.constexpr, BACKWARD: tl.constexpr, SEED_PTR: tl.constexpr, BLOCK_C: tl.constexpr):
    """y = keep ? x·scale : 0 (ALPHA: scale·(keep ? x : saturation) + shift; its BACKWARD:
    keep ? x·scale : 0). n elements; counters and offsets are int64 (n may pass 2^31). The
    seed: the argument, or seed_ptr[0] (SEED_PTR)."""
    u, offs = _uniforms(seed, seed_ptr, SEED_PTR, BLOCK_C)
    _drop(x_ptr, y_ptr, u, offs, n, p, scale, shift, saturation, ALPHA, BACKWARD)


@triton.jit
def dropout_shard_kernel(x_ptr, y_ptr, n, p, scale, shift, saturation, seed, seed_ptr, cols, row_stride, col_offset,
                         ALPHA: tl.constexpr, BACKWARD: tl.constexpr, SEED_PTR: tl.constexpr, BLOCK: tl.constexpr):
    """``dropout_kernel`` on x (rows, cols), columns [col_offset, col_offset + cols) of a
    row_stride-wide layer: element (b, j) takes uniform number b·row_stride + col_offset + j of
    the stream (one Philox call per element), BLOCK elements a program."""
    u, offs = _uniforms_sharded(seed, seed_ptr, cols, row_stride, col_offset, SEED_PTR, BLOCK)
    _drop(x_ptr, y_ptr, u, offs, n, p, scale, shift, saturation, ALPHA, BACKWARD)


@triton.jit
def denoise_kernel(val_ptr, out_ptr, end_ptr, n, p, scale, seed, seed_ptr,
                   HAS_VALUES: tl.constexpr, SEED_PTR: tl.constexpr, BLOCK_C: tl.constexpr):
    """out[k] = (u_k ≥ p and k < end[0]) ? val[k]·scale : 0 over the n slots of a sparse batch
    (val 1 without HAS_VALUES; end[0]: the real nonzero count, the rest is padding)."""
    u, offs = _uniforms(seed, seed_ptr, SEED_PTR, BLOCK_C)
    ok = offs < n
    v = tl.full(offs.shape, 1.0, tl.float32)
    if HAS_VALUES:
        v = tl.load(val_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    keep = (u >= p) & (offs < tl.load(end_ptr))
    tl.store(out_ptr + offs, tl.where(keep, v * scale, 0.0), mask=ok)


BLOCK_C = 2048 if TRITON_INTERPRET else 256  # counters a program (GPU: 1024 elements)


def _seed_args(seed: int | torch.Tensor, like: torch.Tensor) -> tuple[int, torch.Tensor, bool]:
    """(seed argument, seed pointer, SEED_PTR) for a seed given as an int or a device tensor."""
    if isinstance(seed, torch.Tensor):
        if seed.numel() != 1 or seed.dtype != torch.int64 or seed.device != like.device:
            raise ValueError(f"a device seed is one int64 on {like.device}; got {seed.dtype} {tuple(seed.shape)} "
                             f"on {seed.device}")
        return 0, seed, True
    return int(seed), like, False


def _launch(x: torch.Tensor, p: float, seed: int | torch.Tensor, scale: float, shift: float = 0.0,
            saturation: float = 0.0, alpha: bool = False, backward: bool = False,
            shard: tuple[int, int] | None = None) -> torch.Tensor:
    x = x.contiguous()
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        seed_arg, seed_ptr, from_ptr = _seed_args(seed, x)
        grid = (triton.cdiv(n, 4 * BLOCK_C),)
        if shard is None:
            dropout_kernel[grid](x, y, n, p, scale, shift, saturation, seed_arg, seed_ptr,
                                 ALPHA=alpha, BACKWARD=backward, SEED_PTR=from_ptr, BLOCK_C=BLOCK_C, num_warps=4)
        else:
            col_offset, row_stride = shard
            dropout_shard_kernel[grid](x, y, n, p, scale, shift, saturation, seed_arg, seed_ptr, x.shape[-1],
                                       row_stride, col_offset, ALPHA=alpha, BACKWARD=backward, SEED_PTR=from_ptr,
                                       BLOCK=4 * BLOCK_C, num_warps=4)
    return y


def _shard(x: torch.Tensor, col_offset: int, row_stride: int | None) -> tuple[int, int] | None:
    """(col_offset, row_stride) when x is a proper shard of a wider layer, else None."""
    if row_stride is None or (col_offset == 0 and row_stride == x.shape[-1]):
        return None
    return int(col_offset), int(row_stride)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p, seed, saturation, shard):
        ctx.p, ctx.seed, ctx.shard = p, seed, shard
        if saturation is None:  # inverted dropout
            ctx.scale = 1.0 / (1.0 - p)
            return _launch(x, p, seed, ctx.scale, shard=shard)
        q = 1.0 - p
        ctx.scale = (q + saturation * saturation * p * q) ** -0.5
        return _launch(x, p, seed, ctx.scale, -ctx.scale * saturation * p, saturation, alpha=True, shard=shard)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return _launch(grad, ctx.p, ctx.seed, ctx.scale, backward=True, shard=ctx.shard), None, None, None, None


def dropout(x: torch.Tensor, p: float, seed: int | torch.Tensor, col_offset: int = 0,
            row_stride: int | None = None) -> torch.Tensor:
    """Inverted dropout: keep ? x / (1 - p) : 0, differentiable.

    x: any shape, fp32/bf16/fp16 (computed in fp32). seed: a 63-bit stream seed, or a 0-d
    int64 tensor on x's device holding it (read by the kernel: no host sync). col_offset,
    row_stride: x (rows, cols) is columns [col_offset, col_offset + cols) of a row_stride-wide
    layer (a model-parallel shard). Moves 2·numel elements each way (read x, write y; backward
    the same on the gradient); about 40 integer operations per 4 elements for Philox (per
    element for a shard), no mask stored.
    """
    return _Dropout.apply(x, p, seed, None, _shard(x, col_offset, row_stride))


def alpha_dropout(x: torch.Tensor, p: float, seed: int | torch.Tensor, saturation: float, col_offset: int = 0,
                  row_stride: int | None = None) -> torch.Tensor:
    """Alpha dropout for ELU/SELU outputs: a·(keep ? x : saturation) + b with a, b keeping mean
    and variance (``reference.alpha_dropout_ref``); same mask, shapes and costs as ``dropout``."""
    return _Dropout.apply(x, p, seed, saturation, _shard(x, col_offset, row_stride))


def denoise(batch: SparseBatch, p: float, seed: int | torch.Tensor, rescale: bool = True) -> SparseBatch:
    """Denoising (``reference.denoise_ref``): the same batch with float32 values keep ? v / (1 - p)
    : 0 (rescale=False: keep ? v : 0, the same mask), slot k kept when its uniform u_k ≥ p;
    padding slots stay 0. Not differentiable (inputs need no gradient). Reads nnz values,
    writes nnz float32."""
    n = batch.nnz
    values = torch.empty(n, dtype=torch.float32, device=batch.device)
    if n:
        seed_arg, seed_ptr, from_ptr = _seed_args(seed, values)
        src = values if batch.values is None else batch.values.contiguous()
        denoise_kernel[(triton.cdiv(n, 4 * BLOCK_C),)](
            src, values, batch.offsets[-1:], n, p, 1.0 / (1.0 - p) if rescale else 1.0, seed_arg, seed_ptr,
            HAS_VALUES=batch.values is not None, SEED_PTR=from_ptr, BLOCK_C=BLOCK_C, num_warps=4)
    out = SparseBatch(batch.offsets, batch.indices, values, batch.n_features, batch.weights, batch.ignore_zero,
                      batch.padded)
    out._rows = getattr(batch, "_rows", None)
    return out
