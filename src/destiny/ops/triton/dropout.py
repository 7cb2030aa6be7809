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
def dropout_kernel(x_ptr, y_ptr, n, p, scale, shift, saturation, seed, seed_ptr,
                   ALPHA: tl.constexpr, BACKWARD: tl.constexpr, SEED_PTR: tl.constexpr, BLOCK_C: tl.constexpr):
    """y = keep ? x·scale : 0 (ALPHA: scale·(keep ? x : saturation) + shift; its BACKWARD:
    keep ? x·scale : 0). n elements; counters and offsets are int64 (n may pass 2^31). The
    seed: the argument, or seed_ptr[0] (SEED_PTR)."""
    u, offs = _uniforms(seed, seed_ptr, SEED_PTR, BLOCK_C)
    ok = offs < n
    x = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    keep = u >= p
    if ALPHA and not BACKWARD:
        y = scale * tl.where(keep, x, saturation) + shift
    else:
        y = tl.where(keep, x * scale, 0.0)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=ok)


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
            saturation: float = 0.0, alpha: bool = False, backward: bool = False) -> torch.Tensor:
    x = x.contiguous()
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        seed_arg, seed_ptr, from_ptr = _seed_args(seed, x)
        grid = (triton.cdiv(n, 4 * BLOCK_C),)
        dropout_kernel[grid](x, y, n, p, scale, shift, saturation, seed_arg, seed_ptr,
                             ALPHA=alpha, BACKWARD=backward, SEED_PTR=from_ptr, BLOCK_C=BLOCK_C, num_warps=4)
    return y


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p, seed, saturation):
        ctx.p, ctx.seed = p, seed
        if saturation is None:  # inverted dropout
            ctx.scale = 1.0 / (1.0 - p)
            return _launch(x, p, seed, ctx.scale)
        q = 1.0 - p
        ctx.scale = (q + saturation * saturation * p * q) ** -0.5
        return _launch(x, p, seed, ctx.scale, -ctx.scale * saturation * p, saturation, alpha=True)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return _launch(grad, ctx.p, ctx.seed, ctx.scale, backward=True), None, None, None


def dropout(x: torch.Tensor, p: float, seed: int | torch.Tensor) -> torch.Tensor:
    """Inverted dropout: keep ? x / (1 - p) : 0, differentiable.

    x: any shape, fp32/bf16/fp16 (computed in fp32). seed: a 63-bit stream seed, or a 0-d
    int64 tensor on x's device holding it (read by the kernel: no host sync). Moves 2·numel
    elements each way (read x, write y; backward the same on the gradient); about 40 integer
    operations per 4 elements for Philox, no mask stored.
    """
    return _Dropout.apply(x, p, seed, None)


def alpha_dropout(x: torch.Tensor, p: float, seed: int | torch.Tensor, saturation: float) -> torch.Tensor:
    """Alpha dropout for ELU/SELU outputs: a·(keep ? x : saturation) + b with a, b keeping mean
    and variance (``reference.alpha_dropout_ref``); same mask, shapes and costs as ``dropout``."""
    return _Dropout.apply(x, p, seed, saturation)


def denoise(batch: SparseBatch, p: float, seed: int | torch.Tensor) -> SparseBatch:
    """Denoising (``reference.denoise_ref``): the same batch with float32 values keep ? v / (1 - p)
    : 0, slot k kept when its uniform u_k ≥ p; padding slots stay 0. Not differentiable (inputs
    need no gradient). Reads nnz values, writes nnz float32."""
    n = batch.nnz
    values = torch.empty(n, dtype=torch.float32, device=batch.device)
    if n:
        seed_arg, seed_ptr, from_ptr = _seed_args(seed, values)
        src = values if batch.values is None else batch.values.contiguous()
        denoise_kernel[(triton.cdiv(n, 4 * BLOCK_C),)](
            src, values, batch.offsets[-1:], n, p, 1.0 / (1.0 - p), seed_arg, seed_ptr,
            HAS_VALUES=batch.values is not None, SEED_PTR=from_ptr, BLOCK_C=BLOCK_C, num_warps=4)
    out = SparseBatch(batch.offsets, batch.indices, values, batch.n_features, batch.weights, batch.ignore_zero,
                      batch.padded)
    out._rows = getattr(batch, "_rows", None)
    return out
