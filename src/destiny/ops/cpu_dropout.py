"""Dropout for the CPU (where no fused kernel runs): ``reference.dropout_ref``'s numbers bit for
bit, forward and backward, in passes that vectorise.

The reference's ``torch.where(keep, x·s, 0)`` and the ``u ≥ p`` that makes ``keep`` run
element by element on a CPU (about 2.2 and 0.5 ns an element on a 2-core EPYC, against 0.1 for a
multiply), and autograd runs the ``where`` again backward. Here:

- keep is an int32 word per element, all ones where u ≥ p and zero where not, from u's bits:
  for floats ≥ 0 the order of the bit patterns is the order of the values, so u ≥ fl32(p)
  (torch compares a float32 tensor with a Python float in float32) is
  ``bits(u) − bits(fl32(p)) ≥ 0``: a subtraction, an arithmetic shift and a NOT;
- y = (x·s) AND keep on the bit patterns: x·s where kept, +0.0 where dropped — what ``where``
  gives, NaN and −0.0 included; backward: (g·s) AND keep, what autograd's
  where-then-multiply gives.

Float32 and float64 inputs (keep widened to int64); others take the reference. Differentiable
once (no double backward, which no Destiny loss needs).
"""

from __future__ import annotations

import struct

import torch
from torch.autograd.function import once_differentiable

from destiny.ops.reference import dropout_ref, mask_uniforms

_WORD = {torch.float32: torch.int32, torch.float64: torch.int64}


def supports(x: torch.Tensor) -> bool:
    return x.dtype in _WORD


def keep_words(u: torch.Tensor, p: float) -> torch.Tensor:
    """int32 of u's shape: −1 (all bits set) where u ≥ p, 0 where not; u float32 in [0, 1),
    overwritten (its memory is reused)."""
    threshold = struct.unpack("<i", struct.pack("<f", p))[0]  # bits of fl32(p), as torch rounds it
    words = u.view(torch.int32)
    return words.sub_(threshold).bitwise_right_shift_(31).bitwise_not_()  # (−1 where dropped) → NOT


def dropout(x: torch.Tensor, p: float, seed: int, col_offset: int = 0, row_stride: int | None = None) -> torch.Tensor:
    """``reference.dropout_ref(x, p, seed, col_offset, row_stride)``, differentiable in x."""
    if not supports(x):
        return dropout_ref(x, p, seed, col_offset, row_stride)
    keep = keep_words(mask_uniforms(x, seed, col_offset, row_stride), p).to(_WORD[x.dtype])
    return _Dropout.apply(x, keep, 1.0 / (1.0 - p))


def _masked(x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    """(x · scale) AND keep on the bit patterns: x·scale where kept, +0.0 where dropped."""
    y = torch.mul(x, scale)
    y.view(keep.dtype).bitwise_and_(keep)
    return y


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, keep, scale):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return _masked(x, keep, scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return _masked(grad, keep, ctx.scale), None, None
