"""Fused dropout and alpha dropout with counter-based masks: nothing is stored for backward.

Element i of x (row-major) is kept when its uniform u_i ≥ p, u_i = word (i mod 4) of
Philox4x32-10(seed, counter i // 4) — ``destiny.ops.random.uniform`` exactly, so the mask is
bitwise the reference's (``reference.dropout_ref``, ``alpha_dropout_ref``). A program draws
BLOCK_C counters (4·BLOCK_C elements), one Philox call per counter; the backward pass draws
the same numbers again from the seed instead of reading a saved mask.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from destiny.backend import TRITON_INTERPRET


@triton.jit
def dropout_kernel(x_ptr, y_ptr, n, p, scale, shift, saturation, seed,
                   ALPHA: tl.constexpr, BACKWARD: tl.constexpr, BLOCK_C: tl.constexpr):
    """y = keep ? x·scale : 0 (ALPHA: scale·(keep ? x : saturation) + shift; its BACKWARD:
    keep ? x·scale : 0). n elements; counters and offsets are int64 (n may pass 2^31)."""
    counter = tl.program_id(0).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C)  # (BLOCK_C,)
    u0, u1, u2, u3 = tl.rand4x(seed, counter)
    word = tl.arange(0, 4)[None, :]  # (1, 4): element 4c + w takes word w of counter c
    u = tl.where(word == 0, u0[:, None],
                 tl.where(word == 1, u1[:, None], tl.where(word == 2, u2[:, None], u3[:, None])))
    offs = counter[:, None] * 4 + word  # (BLOCK_C, 4) element numbers, int64
    ok = offs < n
    x = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    keep = u >= p
    if ALPHA and not BACKWARD:
        y = scale * tl.where(keep, x, saturation) + shift
    else:
        y = tl.where(keep, x * scale, 0.0)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=ok)


BLOCK_C = 2048 if TRITON_INTERPRET else 256  # counters a program (GPU: 1024 elements)


def _launch(x: torch.Tensor, p: float, seed: int, scale: float, shift: float = 0.0, saturation: float = 0.0,
            alpha: bool = False, backward: bool = False) -> torch.Tensor:
    x = x.contiguous()
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        grid = (triton.cdiv(n, 4 * BLOCK_C),)
        dropout_kernel[grid](x, y, n, p, scale, shift, saturation, seed,
                             ALPHA=alpha, BACKWARD=backward, BLOCK_C=BLOCK_C, num_warps=4)
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


def dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Inverted dropout: keep ? x / (1 - p) : 0, differentiable.

    x: any shape, fp32/bf16/fp16 (computed in fp32). seed: a 63-bit stream seed. Moves 2·numel
    elements each way (read x, write y; backward the same on the gradient); about 40 integer
    operations per 4 elements for Philox, no mask stored.
    """
    return _Dropout.apply(x, p, seed, None)


def alpha_dropout(x: torch.Tensor, p: float, seed: int, saturation: float) -> torch.Tensor:
    """Alpha dropout for ELU/SELU outputs: a·(keep ? x : saturation) + b with a, b keeping mean
    and variance (``reference.alpha_dropout_ref``); same mask, shapes and costs as ``dropout``."""
    return _Dropout.apply(x, p, seed, saturation)
